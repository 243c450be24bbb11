"""Contact sheet: thumbnails in true colour (colour maps expanded) with the detected panels drawn."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from fixtures.scenes import write_scene
from PIL import Image

from pipelines.pictures.contact_sheet import _thumbnail, render_contact_sheet


@pytest.mark.parametrize("layout", ["rgb", "palette"])
def test_thumbnails_show_the_panel_in_its_colour(tmp_path, layout):
    spec = write_scene(tmp_path / "scene.tif", width=512, height=256, panels=[(64, 128, 192, 384)], layout=layout)
    rgb, scale, _, crs = _thumbnail(spec.path)
    assert rgb.shape == (128, 256, 3) and scale == 0.5 and crs is not None
    panel = rgb[40:56, 80:176]  # well inside the panel at half scale
    background = rgb[:24]
    assert (panel[..., 2] > panel[..., 0] + 0.2).all() and (background[..., 2] < background[..., 0]).all()
    sheet = render_contact_sheet([spec.path], gpd.GeoDataFrame({"source": [str(spec.path)]}, geometry=spec.panels, crs=crs),
                                 tmp_path / "sheet.png")
    picture = np.asarray(Image.open(sheet).convert("RGB")).astype(int)
    red_outline = (picture[..., 0] > 200) & (picture[..., 1] < 80) & (picture[..., 2] < 80)
    blue = (picture[..., 2] > picture[..., 0] + 100) & (picture[..., 2] > picture[..., 1] + 100)  # stretched
    assert red_outline.sum() > 100 and blue.sum() > 5000
