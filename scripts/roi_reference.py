#!/usr/bin/env python3
"""Independent reference for a region's statistics (tests/reference.rs,
`ge_tilted_ct_region_equals_numpy`): the voxels of one slice whose centres lie inside an
ellipse, placed from the files' own Image Position/Orientation and Pixel Spacing (pydicom,
numpy), in HU through each file's Rescale Slope/Intercept.

    python3 scripts/roi_reference.py ../shared/dicom/ct/ge_hispeed_tilt_nonuniform/dicom

prints the ellipse (centre and semi-axes in LPS mm) and count, mean, sd (n - 1), min, max.
"""
import sys
from pathlib import Path

import numpy as np
import pydicom

files = [pydicom.dcmread(p) for p in sorted(Path(sys.argv[1]).glob("*.dcm"))]
row = np.array(files[0].ImageOrientationPatient[:3], float)
col = np.array(files[0].ImageOrientationPatient[3:], float)
normal = np.cross(row, col)
files.sort(key=lambda f: float(np.dot(np.array(f.ImagePositionPatient, float), normal)))

# Slice 14 of 28 (counted from the first along the normal), an ellipse of 40 x 15 mm
# semi-axes turned 30 degrees in the slice's plane, centred off any voxel centre.
f = files[14]
dr, dc = (float(x) for x in f.PixelSpacing)  # row spacing (between rows), column spacing
origin = np.array(f.ImagePositionPatient, float)
turn = np.radians(30.0)
ua = np.cos(turn) * row + np.sin(turn) * col
ub = -np.sin(turn) * row + np.cos(turn) * col
ra, rb = 40.0, 15.0
centre = origin + 250.3 * dc * row + 201.7 * dr * col

i, j = np.meshgrid(np.arange(f.Columns), np.arange(f.Rows))
pos = origin + i[..., None] * dc * row + j[..., None] * dr * col
d = pos - centre
inside = (d @ ua / ra) ** 2 + (d @ ub / rb) ** 2 <= 1.0
hu = f.pixel_array.astype(float) * float(f.RescaleSlope) + float(f.RescaleIntercept)
v = hu[inside]
print("centre", [float(x) for x in centre])
print("semi_axis_1", [float(x) for x in ra * ua])
print("semi_axis_2", [float(x) for x in rb * ub])
print("count", v.size, "mean", float(v.mean()), "sd", float(v.std(ddof=1)), "min", v.min(), "max", v.max())
