//! CSV with a header row: float features, and a `label` column of class indices.

use super::Dataset;
use crate::MlError;

/// Largest number of classes a CSV may have.
pub const MAX_CSV_CLASSES: usize = 1_000;
/// Largest number of feature columns.
pub const MAX_CSV_FEATURES: usize = 10_000;

/// Parses CSV text: a header naming the columns, one of them `label`
/// (non-negative integers); every other column is a float feature.
pub fn parse_csv(bytes: &[u8]) -> Result<Dataset, MlError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| MlError::Data(format!("CSV is not UTF-8: {e}")))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, head) = lines
        .next()
        .ok_or_else(|| MlError::Data("CSV is empty".into()))?;
    let columns: Vec<&str> = head.split(',').map(str::trim).collect();
    let label_col = columns
        .iter()
        .position(|c| *c == "label")
        .ok_or_else(|| MlError::Data("CSV header has no `label` column".into()))?;
    let n_features = columns.len() - 1;
    if n_features == 0 || n_features > MAX_CSV_FEATURES {
        return Err(MlError::Data(format!(
            "CSV must have 1 to {MAX_CSV_FEATURES} feature columns besides `label`"
        )));
    }
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (number, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != columns.len() {
            return Err(MlError::Data(format!(
                "CSV line {}: {} cells, the header has {}",
                number + 1,
                cells.len(),
                columns.len()
            )));
        }
        for (i, cell) in cells.iter().enumerate() {
            if i == label_col {
                let label: u32 = cell.parse().map_err(|_| {
                    MlError::Data(format!(
                        "CSV line {}: label {cell:?} is not a class index",
                        number + 1
                    ))
                })?;
                if label as usize >= MAX_CSV_CLASSES {
                    return Err(MlError::Data(format!(
                        "CSV line {}: label {label} is over the limit of {MAX_CSV_CLASSES} classes",
                        number + 1
                    )));
                }
                labels.push(label);
            } else {
                let value: f32 = cell
                    .parse()
                    .ok()
                    .filter(|v: &f32| v.is_finite())
                    .ok_or_else(|| {
                        MlError::Data(format!(
                            "CSV line {}: column {:?} has {cell:?}, not a finite number",
                            number + 1,
                            columns[i]
                        ))
                    })?;
                features.push(value);
            }
        }
    }
    if labels.len() < 2 {
        return Err(MlError::Data("CSV needs at least two rows of data".into()));
    }
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    Ok(Dataset {
        shape: vec![n_features],
        features,
        labels,
        classes,
    })
}

/// The names of a CSV's feature columns, in order (every column but
/// `label`), from its header line.
pub fn csv_columns(bytes: &[u8]) -> Result<Vec<String>, MlError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| MlError::Data(format!("CSV is not UTF-8: {e}")))?;
    let head = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| MlError::Data("CSV is empty".into()))?;
    Ok(head
        .split(',')
        .map(str::trim)
        .filter(|c| *c != "label")
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_bad_cells() {
        let d = parse_csv(b"a,b,label\n1,2,0\n3,4,2\n").unwrap();
        assert_eq!((d.len(), d.shape.clone(), d.classes), (2, vec![2], 3));
        assert_eq!(d.features, vec![1.0, 2.0, 3.0, 4.0]);
        let err = parse_csv(b"a,label\n1,0\nx,1\n").unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("\"a\""), "{err}");
        assert!(parse_csv(b"a,b\n1,2\n").is_err());
        assert_eq!(
            csv_columns(b"a, label ,b\n1,0,2\n").unwrap(),
            vec!["a", "b"]
        );
    }
}
