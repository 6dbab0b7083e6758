//! A contributor's own data, for federated jobs: read where it lies (a
//! browser tab, a worker's disk) and never sent anywhere.

use std::sync::Arc;

use oblivion_protocol::wire::LocalDataOffer;

use super::{Dataset, csv_columns, maybe_gunzip, parse_csv};
use crate::MlError;

/// Largest local file accepted, bytes once decompressed.
pub const MAX_LOCAL_BYTES: usize = 512 * 1024 * 1024;

const IDX_IMAGES: u32 = 2051;
const IDX_LABELS: u32 = 2049;

fn magic(bytes: &[u8]) -> Option<u32> {
    let m = bytes.get(..4)?;
    Some(u32::from_be_bytes([m[0], m[1], m[2], m[3]]))
}

/// A contributor's data, and its feature columns' names when it has them.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalData {
    /// The samples (shared with every lease that trains them unscaled).
    pub data: Arc<Dataset>,
    /// A CSV's feature column names, in order; `None` for images.
    pub columns: Option<Vec<String>>,
}

impl LocalData {
    /// What a worker tells the coordinator of it: shape, classes, size and
    /// column names, nothing of the content.
    pub fn offer(&self) -> LocalDataOffer {
        LocalDataOffer {
            shape: self.data.shape.clone(),
            classes: self.data.classes,
            samples: self.data.len() as u64,
            columns: self.columns.clone(),
        }
    }
}

/// Reads local data from its files' bytes: one CSV file (a header, a
/// `label` column), or an IDX images file and an IDX labels file in either
/// order. Each may be gzip. The error says what is wrong in one line.
pub fn read_local(files: &[&[u8]]) -> Result<LocalData, MlError> {
    let raw: Vec<Vec<u8>> = files
        .iter()
        .map(|f| maybe_gunzip(f, MAX_LOCAL_BYTES))
        .collect::<Result<_, _>>()?;
    let (data, columns) = match raw.as_slice() {
        [csv] if !matches!(magic(csv), Some(IDX_IMAGES | IDX_LABELS)) => {
            (parse_csv(csv)?, Some(csv_columns(csv)?))
        }
        [a, b] => match (magic(a), magic(b)) {
            (Some(IDX_IMAGES), Some(IDX_LABELS)) => (Dataset::from_idx(a, b)?, None),
            (Some(IDX_LABELS), Some(IDX_IMAGES)) => (Dataset::from_idx(b, a)?, None),
            _ => {
                return Err(MlError::Data(
                    "two files must be an IDX images file and an IDX labels file".into(),
                ));
            }
        },
        [_] => {
            return Err(MlError::Data(
                "an IDX file needs its partner: give both the images and the labels".into(),
            ));
        }
        _ => {
            return Err(MlError::Data(
                "give one CSV file, or an IDX images file and an IDX labels file".into(),
            ));
        }
    };
    if data.is_empty() {
        return Err(MlError::Data("the local data has no samples".into()));
    }
    Ok(LocalData {
        data: Arc::new(data),
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_idx_pairs_are_recognised_in_any_order() {
        let csv = b"a,b,label\n1,2,0\n3,4,1\n5,6,2\n";
        let local = read_local(&[csv]).unwrap();
        assert_eq!(local.columns, Some(vec!["a".to_string(), "b".to_string()]));
        let d = &local.data;
        assert_eq!((d.shape.clone(), d.len(), d.classes), (vec![2], 3, 3));
        let mut images = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
        images.extend([0, 255, 128, 1, 2, 3, 4, 5]);
        let labels = [0, 0, 8, 1, 0, 0, 0, 2, 7, 1];
        let a = read_local(&[&images, &labels]).unwrap();
        let b = read_local(&[&labels, &images]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.columns, None);
        let a = &a.data;
        assert_eq!((a.shape.clone(), a.len(), a.classes), (vec![1, 2, 2], 2, 8));
        let err = read_local(&[&images]).unwrap_err().to_string();
        assert!(err.contains("partner"), "{err}");
        let err = read_local(&[csv, csv]).unwrap_err().to_string();
        assert!(err.contains("IDX images"), "{err}");
        assert!(read_local(&[b"label\n"]).is_err());
    }
}
