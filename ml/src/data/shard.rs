//! The shard file: a dataset slice as a worker downloads it.
//!
//! Layout (little-endian), then gzip over all of it:
//! `b"OBSD"`, version `u32` (1), rank `u32`, each dim `u32`, classes `u32`,
//! samples `u32`, encoding `u8` (0: f32 values, 1: u8 values meaning v/255),
//! the features, then one `u32` label per sample.
//!
//! Images whose values are all multiples of 1/255 travel as bytes, 4x smaller.

use std::io::Write;

use super::Dataset;
use crate::MlError;

const MAGIC: &[u8; 4] = b"OBSD";
/// Largest decompressed shard accepted by a worker.
pub const MAX_SHARD_BYTES: usize = 256 * 1024 * 1024;

fn as_bytes(values: &[f32]) -> Option<Vec<u8>> {
    values
        .iter()
        .map(|v| {
            let b = (v * 255.0).round();
            ((0.0..=255.0).contains(&b) && (b / 255.0 - v).abs() < 1e-6).then_some(b as u8)
        })
        .collect()
}

/// Encodes (and compresses) a dataset slice.
pub fn encode_shard(data: &Dataset) -> Vec<u8> {
    let mut raw = Vec::with_capacity(32 + data.features.len() * 4 + data.labels.len() * 4);
    raw.extend_from_slice(MAGIC);
    raw.extend_from_slice(&1u32.to_le_bytes());
    raw.extend_from_slice(&(data.shape.len() as u32).to_le_bytes());
    for d in &data.shape {
        raw.extend_from_slice(&(*d as u32).to_le_bytes());
    }
    raw.extend_from_slice(&(data.classes as u32).to_le_bytes());
    raw.extend_from_slice(&(data.len() as u32).to_le_bytes());
    match as_bytes(&data.features) {
        Some(bytes) => {
            raw.push(1);
            raw.extend_from_slice(&bytes);
        }
        None => {
            raw.push(0);
            for v in &data.features {
                raw.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    for l in &data.labels {
        raw.extend_from_slice(&l.to_le_bytes());
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(&raw);
    gz.finish().unwrap_or_default()
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], MlError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| MlError::Data("shard is truncated".into()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<usize, MlError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

/// Decodes a shard made by [`encode_shard`], checking every size.
pub fn decode_shard(bytes: &[u8]) -> Result<Dataset, MlError> {
    let raw = super::maybe_gunzip(bytes, MAX_SHARD_BYTES)?;
    let mut r = Reader { bytes: &raw, at: 0 };
    if r.take(4)? != MAGIC {
        return Err(MlError::Data("not a shard file".into()));
    }
    if r.u32()? != 1 {
        return Err(MlError::Data("unsupported shard version".into()));
    }
    let rank = r.u32()?;
    if !(1..=3).contains(&rank) {
        return Err(MlError::Data(format!("shard rank {rank} is not 1 to 3")));
    }
    let shape = (0..rank).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
    let classes = r.u32()?;
    let n = r.u32()?;
    let per: usize = shape.iter().product();
    let values = n
        .checked_mul(per)
        .filter(|v| *v <= MAX_SHARD_BYTES)
        .ok_or_else(|| MlError::Data("shard dimensions are too large".into()))?;
    let features = match r.take(1)?[0] {
        1 => r
            .take(values)?
            .iter()
            .map(|&b| f32::from(b) / 255.0)
            .collect(),
        0 => r
            .take(values * 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        e => return Err(MlError::Data(format!("unknown shard encoding {e}"))),
    };
    let labels: Vec<u32> = r
        .take(n * 4)?
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if labels.iter().any(|&l| l as usize >= classes) {
        return Err(MlError::Data("shard has a label out of range".into()));
    }
    Ok(Dataset {
        shape,
        features,
        labels,
        classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_encodings() {
        for features in [vec![0.0, 1.0, 2.0 / 255.0, 1.0], vec![0.5, -1.25, 3.0, 7.0]] {
            let d = Dataset {
                shape: vec![2],
                features,
                labels: vec![0, 1],
                classes: 2,
            };
            assert_eq!(decode_shard(&encode_shard(&d)).unwrap(), d);
        }
        assert!(decode_shard(b"junk").is_err());
    }
}
