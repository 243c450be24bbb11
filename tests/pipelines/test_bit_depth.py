"""Integer imagery is scaled to [0, 1] by the bit depth given (--bit-depth) or declared (GDAL's NBITS), else by its
data type."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from fixtures.scenes import write_scene

from pipelines.errors import BandLayoutError
from pipelines.normalisation import full_scale, to_unit_range
from pipelines.prepared import read_image_bands
from pipelines.scenes import open_scene


def test_a_declared_bit_depth_sets_the_full_scale_value(tmp_path):
    twelve = write_scene(tmp_path / "12.tif", width=8, height=8, panels=[], dtype="uint16", bits=12,
                         declare_bits=True)
    plain = write_scene(tmp_path / "16.tif", width=8, height=8, panels=[], dtype="uint16", bits=12)
    with rasterio.open(twelve.path) as a, rasterio.open(plain.path) as b:
        assert (full_scale(a), full_scale(b)) == (4095.0, None)
    bands = ["red", "green", "blue"]
    assert open_scene(twelve.path, bands).full_scale == 4095.0
    assert open_scene(plain.path, bands).full_scale is None


def test_unit_range_by_declared_scale_or_by_data_type():
    values = np.array([0, 2048, 4095], np.uint16)
    assert to_unit_range(values, 4095.0).tolist() == [0.0, np.float32(2048 / 4095), 1.0]
    assert to_unit_range(values).tolist() == [0.0, np.float32(2048 / 65535), np.float32(4095 / 65535)]
    assert to_unit_range(np.array([5000], np.uint16), 4095.0).tolist() == [1.0]  # beyond the declared scale
    assert to_unit_range(np.array([0.5], np.float32), 4095.0).tolist() == [0.5]  # floats keep their values


def test_training_reads_12_bit_tiles_as_their_8_bit_originals(tmp_path):
    eight = write_scene(tmp_path / "8.tif", width=8, height=8, panels=[(1, 1, 4, 4)])
    twelve = write_scene(tmp_path / "12.tif", width=8, height=8, panels=[(1, 1, 4, 4)], dtype="uint16", bits=12,
                         declare_bits=True)
    # within one 8-bit step: the 8-bit file truncates the colours the 12-bit one rounds
    np.testing.assert_allclose(read_image_bands(twelve.path, 3), read_image_bands(eight.path, 3), atol=1 / 255)


def test_a_bit_depth_given_overrides_the_declared_one_for_integer_rasters_only(tmp_path):
    bands = ["red", "green", "blue"]
    declared = write_scene(tmp_path / "12.tif", width=8, height=8, panels=[], dtype="uint16", bits=12,
                           declare_bits=True)
    floats = write_scene(tmp_path / "f.tif", width=8, height=8, panels=[], dtype="float32")
    signed = write_scene(tmp_path / "s.tif", width=8, height=8, panels=[], dtype="int16")
    assert open_scene(declared.path, bands, bit_depth=11).full_scale == 2047.0
    assert open_scene(floats.path, bands, bit_depth=11).full_scale is None  # floats are in [0, 1] already
    assert open_scene(signed.path, bands, bit_depth=15).full_scale == 32767.0
    with pytest.raises(BandLayoutError, match=r"--bit-depth 16 is more than its int16 pixels hold \(15 bits\)"):
        open_scene(signed.path, bands, bit_depth=16)
