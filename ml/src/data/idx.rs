//! The IDX format of MNIST: a big-endian header (magic, dimensions) and bytes.

use crate::MlError;

/// Largest decompressed IDX file accepted.
const MAX_IDX_BYTES: usize = 512 * 1024 * 1024;

fn header(bytes: &[u8], magic: u32, what: &str) -> Result<(Vec<usize>, usize), MlError> {
    let dims = match magic {
        2049 => 1,
        _ => 3,
    };
    let head = 4 + 4 * dims;
    let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    if bytes.len() < 4 || word(0) != magic {
        return Err(MlError::Data(format!(
            "{what}: not an IDX file with magic number {magic}"
        )));
    }
    if bytes.len() < head {
        return Err(MlError::Data(format!(
            "{what}: file too short for an IDX header"
        )));
    }
    let shape: Vec<usize> = (0..dims).map(|d| word(4 + 4 * d) as usize).collect();
    let total = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| MlError::Data(format!("{what}: dimensions overflow")))?;
    if bytes.len() - head != total {
        return Err(MlError::Data(format!(
            "{what}: header says {total} bytes of data, file has {}",
            bytes.len() - head
        )));
    }
    Ok((shape, head))
}

/// Parses an IDX image file (magic 2051, optionally gzip) into the shape of
/// one image, `[1, rows, cols]`, and all pixels.
pub fn parse_idx_images(bytes: &[u8]) -> Result<(Vec<usize>, Vec<u8>), MlError> {
    let bytes = super::maybe_gunzip(bytes, MAX_IDX_BYTES)?;
    let (shape, head) = header(&bytes, 2051, "images")?;
    if shape[1] == 0 || shape[2] == 0 || shape[1] > 512 || shape[2] > 512 {
        return Err(MlError::Data(format!(
            "images: {}x{} images are not supported (1 to 512 pixels a side)",
            shape[1], shape[2]
        )));
    }
    Ok((vec![1, shape[1], shape[2]], bytes[head..].to_vec()))
}

/// Parses an IDX label file (magic 2049, optionally gzip).
pub fn parse_idx_labels(bytes: &[u8]) -> Result<Vec<u32>, MlError> {
    let bytes = super::maybe_gunzip(bytes, MAX_IDX_BYTES)?;
    let (_, head) = header(&bytes, 2049, "labels")?;
    let labels: Vec<u32> = bytes[head..].iter().map(|&b| u32::from(b)).collect();
    if labels.iter().any(|&l| l >= 256) {
        return Err(MlError::Data("labels: a label is out of range".into()));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_magic_and_truncation() {
        let mut labels = vec![0, 0, 8, 1, 0, 0, 0, 2, 3, 4];
        assert_eq!(parse_idx_labels(&labels).unwrap(), vec![3, 4]);
        labels.pop();
        assert!(
            parse_idx_labels(&labels)
                .unwrap_err()
                .to_string()
                .contains("header says")
        );
        assert!(
            parse_idx_images(&labels)
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
    }

    #[test]
    fn images_over_the_decoded_budget_are_refused_before_decoding() {
        // Two 4x4 images: 32 pixels, 128 bytes once decoded to f32.
        let mut images = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4];
        images.extend([7u8; 32]);
        let labels = [0, 0, 8, 1, 0, 0, 0, 2, 1, 0];
        let data = crate::data::Dataset::from_idx_within(&images, &labels, 128).unwrap();
        assert_eq!(data.len(), 2);
        let e = crate::data::Dataset::from_idx_within(&images, &labels, 127).unwrap_err();
        assert!(e.to_string().contains("128 bytes decoded"), "{e}");
    }
}
