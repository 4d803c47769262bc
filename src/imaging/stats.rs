//! Voxel statistics and a content hash of a loaded volume (for `overread load --json`, tests
//! and comparisons between loaders).

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::decode::{Volume, Voxels};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VoxelStats {
    pub count: usize,
    /// Stored values.
    pub min_stored: i32,
    pub max_stored: i32,
    pub mean_stored: f64,
    /// Modality values (HU for CT), after each slice's rescale.
    pub min_modality: f64,
    pub max_modality: f64,
    pub mean_modality: f64,
    /// sha256 of the voxel buffer as little-endian 2-byte values in [k][j][i] order.
    pub sha256: String,
}

/// Statistics over every voxel (failed slices included, as zeros: they are listed apart).
pub fn voxel_stats(volume: &Volume) -> VoxelStats {
    let [n, rows, cols] = volume.voxels.shape();
    let slice_len = rows * cols;
    let mut hasher = Sha256::new();
    let (mut min, mut max, mut sum) = (i32::MAX, i32::MIN, 0f64);
    let (mut min_m, mut max_m, mut sum_m) = (f64::INFINITY, f64::NEG_INFINITY, 0f64);
    let mut buf = Vec::with_capacity(slice_len * 2);
    for k in 0..n {
        let r = volume.rescale.for_slice(k);
        let (smin, smax, ssum) = match &volume.voxels {
            Voxels::U16(a) => slice_stats(
                a.index_axis(ndarray::Axis(0), k)
                    .iter()
                    .map(|v| i32::from(*v)),
                &mut buf,
                |v, b| b.extend_from_slice(&(v as u16).to_le_bytes()),
            ),
            Voxels::I16(a) => slice_stats(
                a.index_axis(ndarray::Axis(0), k)
                    .iter()
                    .map(|v| i32::from(*v)),
                &mut buf,
                |v, b| b.extend_from_slice(&(v as i16).to_le_bytes()),
            ),
        };
        hasher.update(&buf);
        min = min.min(smin);
        max = max.max(smax);
        sum += ssum;
        let (a, b) = (r.apply(f64::from(smin)), r.apply(f64::from(smax)));
        min_m = min_m.min(a.min(b));
        max_m = max_m.max(a.max(b));
        sum_m += r.slope * ssum + r.intercept * slice_len as f64;
    }
    let count = n * slice_len;
    let denom = count.max(1) as f64;
    VoxelStats {
        count,
        min_stored: min,
        max_stored: max,
        mean_stored: sum / denom,
        min_modality: min_m,
        max_modality: max_m,
        mean_modality: sum_m / denom,
        sha256: format!("{:x}", hasher.finalize()),
    }
}

fn slice_stats(
    values: impl Iterator<Item = i32>,
    buf: &mut Vec<u8>,
    push: impl Fn(i32, &mut Vec<u8>),
) -> (i32, i32, f64) {
    buf.clear();
    let (mut min, mut max, mut sum) = (i32::MAX, i32::MIN, 0i64);
    for v in values {
        min = min.min(v);
        max = max.max(v);
        sum += i64::from(v);
        push(v, buf);
    }
    (min, max, sum as f64)
}
