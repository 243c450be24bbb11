"""Judging and calibrating a bundle: on lone labelled chips (``chips``) and on whole scenes (``scenes``)."""
