//! Voxel statistics and a content hash of a loaded volume (for `overread load --json`, tests
//! and comparisons between loaders).

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::decode::{Volume, Voxels};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VoxelStats {
    pub count: usize,
    /// The values the volume holds: the stored values, or where a slice has a Modality LUT
    /// its values (less 32768 in a signed volume; `imaging::decode::rescale_policy`).
    pub min_stored: i32,
    pub max_stored: i32,
    pub mean_stored: f64,
    /// Modality values (HU for CT), after each slice's rescale.
    pub min_modality: f64,
    pub max_modality: f64,
    pub mean_modality: f64,
    /// sha256 of the voxel buffer as little-endian 2-byte values in [k][j][i] order (absent
    /// when not asked for: hashing is the slowest part of a summary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Per-slice (min, max, sum) of stored values.
fn slice_stats(values: impl Iterator<Item = i32>) -> (i32, i32, i64) {
    values.fold((i32::MAX, i32::MIN, 0i64), |(lo, hi, sum), v| {
        (lo.min(v), hi.max(v), sum + i64::from(v))
    })
}

/// Statistics over every voxel (failed slices included, as zeros: they are listed apart) and
/// the sha256 of the buffer.
pub fn voxel_stats(volume: &Volume) -> VoxelStats {
    summarize(volume, true)
}

/// [`voxel_stats`] without the hash (ranges and means only: fast, for display defaults).
pub fn voxel_range(volume: &Volume) -> VoxelStats {
    summarize(volume, false)
}

/// Slices are summarised in parallel; the hash runs over the buffer as it lies in memory.
fn summarize(volume: &Volume, hash: bool) -> VoxelStats {
    let [n, rows, cols] = volume.voxels.shape();
    let slice_len = rows * cols;
    let per_slice: Vec<(i32, i32, i64)> = match &volume.voxels {
        Voxels::U16(a) => a.as_slice().map(|s| {
            s.par_chunks(slice_len.max(1))
                .map(|c| slice_stats(c.iter().map(|v| i32::from(*v))))
                .collect()
        }),
        Voxels::I16(a) => a.as_slice().map(|s| {
            s.par_chunks(slice_len.max(1))
                .map(|c| slice_stats(c.iter().map(|v| i32::from(*v))))
                .collect()
        }),
        // Colour: the statistics of the luma; the hash of the RGB bytes.
        Voxels::Rgb(a) => a.as_slice().map(|s| {
            s.par_chunks(slice_len.max(1))
                .map(|c| slice_stats(c.iter().map(|v| crate::decode::luma(*v))))
                .collect()
        }),
    }
    .unwrap_or_default();
    let sha256 = hash.then(|| {
        let mut hasher = Sha256::new();
        match &volume.voxels {
            Voxels::U16(a) => hash_le(&mut hasher, a.as_slice().unwrap_or_default()),
            Voxels::I16(a) => hash_le(&mut hasher, a.as_slice().unwrap_or_default()),
            Voxels::Rgb(a) => hasher.update(a.as_slice().unwrap_or_default().as_flattened()),
        }
        format!("{:x}", hasher.finalize())
    });
    let (mut min, mut max, mut sum) = (i32::MAX, i32::MIN, 0f64);
    let (mut min_m, mut max_m, mut sum_m) = (f64::INFINITY, f64::NEG_INFINITY, 0f64);
    for (k, &(smin, smax, ssum)) in per_slice.iter().enumerate() {
        let r = volume.rescale.for_slice(k);
        min = min.min(smin);
        max = max.max(smax);
        sum += ssum as f64;
        let (a, b) = (r.apply(f64::from(smin)), r.apply(f64::from(smax)));
        min_m = min_m.min(a.min(b));
        max_m = max_m.max(a.max(b));
        sum_m += r.slope * ssum as f64 + r.intercept * slice_len as f64;
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
        sha256,
    }
}

/// Feed 2-byte values to the hash as little-endian bytes: the memory itself on little-endian
/// hosts, a swapped copy in chunks elsewhere.
fn hash_le<T: bytemuck::Pod + Into<i32>>(hasher: &mut Sha256, values: &[T]) {
    if cfg!(target_endian = "little") {
        hasher.update(bytemuck::cast_slice::<T, u8>(values));
    } else {
        for chunk in values.chunks(1 << 16) {
            let bytes: Vec<u8> = chunk
                .iter()
                .flat_map(|v| ((*v).into() as u16).to_le_bytes())
                .collect();
            hasher.update(&bytes);
        }
    }
}
