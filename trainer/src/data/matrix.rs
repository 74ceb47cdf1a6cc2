//! The patient x code matrix, stored sparse (CSR), with its vocabulary and patient ids.

use std::collections::HashMap;
use std::path::Path;

use medgan_sample::DataType;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::DataError;

/// Value of the `format` metadata key of a saved matrix.
const FILE_FORMAT: &str = "medgan-patient-matrix";
/// Version of the saved-matrix layout; bump when the tensors or metadata change meaning.
const FILE_VERSION: &str = "1";

/// Patients as rows, codes as columns, only non-zero cells stored.
///
/// Row `i` holds the columns `indices[indptr[i]..indptr[i + 1]]`, strictly increasing, with
/// their values (always 1 in a binary matrix). Memory grows with the non-zero cells alone.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientMatrix {
    data_type: DataType,
    codes: Vec<String>,
    patient_ids: Vec<String>,
    indptr: Vec<u64>,
    indices: Vec<u32>,
    values: Vec<u32>,
}

impl PatientMatrix {
    /// Builds a matrix from CSR arrays, checking every invariant the rest of the trainer relies on.
    pub fn from_csr(
        data_type: DataType,
        codes: Vec<String>,
        patient_ids: Vec<String>,
        indptr: Vec<u64>,
        indices: Vec<u32>,
        values: Vec<u32>,
    ) -> Result<Self, DataError> {
        let invalid = |why: String| Err(DataError::InvalidMatrix(why));
        if indptr.len() != patient_ids.len() + 1 {
            return invalid(format!(
                "{} row pointers for {} patients",
                indptr.len(),
                patient_ids.len()
            ));
        }
        if indptr[0] != 0 || *indptr.last().unwrap_or(&0) as usize != indices.len() {
            return invalid("row pointers do not span the stored cells".into());
        }
        if indices.len() != values.len() {
            return invalid(format!(
                "{} column indices but {} values",
                indices.len(),
                values.len()
            ));
        }
        for (row, bounds) in indptr.windows(2).enumerate() {
            if bounds[0] > bounds[1] {
                return invalid(format!("row pointers decrease at row {row}"));
            }
            let cols = &indices[bounds[0] as usize..bounds[1] as usize];
            if cols.windows(2).any(|pair| pair[0] >= pair[1]) {
                return invalid(format!("columns of row {row} are not strictly increasing"));
            }
            if cols.last().is_some_and(|&c| c as usize >= codes.len()) {
                return invalid(format!(
                    "row {row} names a column past the {} codes",
                    codes.len()
                ));
            }
        }
        if let Some(pos) = values.iter().position(|&v| v == 0) {
            return invalid(format!("stored cell {pos} is zero"));
        }
        if data_type == DataType::Binary && values.iter().any(|&v| v != 1) {
            return invalid("a binary matrix stores a value other than 1".into());
        }
        Ok(Self {
            data_type,
            codes,
            patient_ids,
            indptr,
            indices,
            values,
        })
    }

    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    /// The vocabulary: column `j` is code `codes()[j]`.
    pub fn codes(&self) -> &[String] {
        &self.codes
    }

    pub fn patient_ids(&self) -> &[String] {
        &self.patient_ids
    }

    pub fn n_patients(&self) -> usize {
        self.patient_ids.len()
    }

    pub fn n_codes(&self) -> usize {
        self.codes.len()
    }

    /// Number of stored (non-zero) cells.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Share of cells that are non-zero; 0 for an empty matrix.
    pub fn density(&self) -> f64 {
        let cells = self.n_patients() as f64 * self.n_codes() as f64;
        if cells == 0.0 {
            0.0
        } else {
            self.nnz() as f64 / cells
        }
    }

    /// Largest stored value; 0 for an all-zero matrix.
    pub fn max_value(&self) -> u32 {
        self.values.iter().copied().max().unwrap_or(0)
    }

    /// Column indices and values of one patient's non-zero cells.
    pub fn row(&self, patient: usize) -> (&[u32], &[u32]) {
        let start = self.indptr[patient] as usize;
        let end = self.indptr[patient + 1] as usize;
        (&self.indices[start..end], &self.values[start..end])
    }

    /// Number of patients in whom each code is non-zero, in column order.
    pub fn patients_per_code(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.n_codes()];
        for &col in &self.indices {
            counts[col as usize] += 1;
        }
        counts
    }

    /// Writes the given rows densely, row-major (`rows.len() x n_codes`), into `out`.
    ///
    /// `out` is cleared first and reused, so a training loop allocates its batch buffer once.
    pub fn densify_rows(&self, rows: &[usize], out: &mut Vec<f32>) {
        let width = self.n_codes();
        out.clear();
        out.resize(rows.len() * width, 0.0);
        for (slot, &patient) in rows.iter().enumerate() {
            let (cols, vals) = self.row(patient);
            let dense = &mut out[slot * width..(slot + 1) * width];
            for (&col, &val) in cols.iter().zip(vals) {
                dense[col as usize] = val as f32;
            }
        }
    }

    /// A new matrix of the given rows, in that order, with the same vocabulary.
    pub fn select_rows(&self, rows: &[usize]) -> Self {
        let mut indptr = Vec::with_capacity(rows.len() + 1);
        let mut indices = Vec::new();
        let mut values = Vec::new();
        let mut patient_ids = Vec::with_capacity(rows.len());
        indptr.push(0);
        for &patient in rows {
            let (cols, vals) = self.row(patient);
            indices.extend_from_slice(cols);
            values.extend_from_slice(vals);
            indptr.push(indices.len() as u64);
            patient_ids.push(self.patient_ids[patient].clone());
        }
        Self {
            data_type: self.data_type,
            codes: self.codes.clone(),
            patient_ids,
            indptr,
            indices,
            values,
        }
    }

    /// Saves the matrix as one safetensors file, through a temporary file renamed into place.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let io = |source| DataError::Io {
            path: path.to_path_buf(),
            source,
        };
        let indptr = le_bytes_u64(&self.indptr);
        let indices = le_bytes_u32(&self.indices);
        let values = le_bytes_u32(&self.values);
        // A fn, not a closure: the view borrows `bytes`, which a closure signature cannot say.
        fn view(dtype: Dtype, len: usize, bytes: &[u8]) -> Result<TensorView<'_>, DataError> {
            TensorView::new(dtype, vec![len], bytes)
                .map_err(|e| DataError::InvalidMatrix(e.to_string()))
        }
        let tensors = vec![
            ("indptr", view(Dtype::U64, self.indptr.len(), &indptr)?),
            ("indices", view(Dtype::U32, self.indices.len(), &indices)?),
            ("values", view(Dtype::U32, self.values.len(), &values)?),
        ];
        let json = |v: &Vec<String>| serde_json::to_string(v).expect("strings always serialise");
        let metadata = HashMap::from([
            ("format".to_string(), FILE_FORMAT.to_string()),
            ("version".to_string(), FILE_VERSION.to_string()),
            ("data_type".to_string(), self.data_type.to_string()),
            ("codes".to_string(), json(&self.codes)),
            ("patient_ids".to_string(), json(&self.patient_ids)),
        ]);
        let bytes = safetensors::serialize(tensors, Some(metadata))
            .map_err(|e| DataError::InvalidMatrix(e.to_string()))?;
        crate::atomic_file::write_atomically(path, &bytes).map_err(io)?;
        Ok(())
    }

    /// Loads a matrix written by [`PatientMatrix::save`].
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let bad = |why: String| DataError::NotAMatrixFile {
            path: path.to_path_buf(),
            why,
        };
        let bytes = std::fs::read(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let field = |key: &str| {
            meta.get(key)
                .ok_or_else(|| bad(format!("no `{key}` metadata")))
        };
        if field("format")? != FILE_FORMAT {
            return Err(bad("not a prepared patient matrix".into()));
        }
        if field("version")? != FILE_VERSION {
            return Err(bad(format!(
                "layout version {} (this build reads {FILE_VERSION})",
                field("version")?
            )));
        }
        let data_type = match field("data_type")?.as_str() {
            "binary" => DataType::Binary,
            "count" => DataType::Count,
            other => return Err(bad(format!("unknown data type `{other}`"))),
        };
        let strings = |key: &str| -> Result<Vec<String>, DataError> {
            serde_json::from_str(field(key)?).map_err(|e| bad(format!("`{key}`: {e}")))
        };
        let codes = strings("codes")?;
        let patient_ids = strings("patient_ids")?;
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let raw = |name: &str, dtype: Dtype| -> Result<&[u8], DataError> {
            let t = tensors
                .tensor(name)
                .map_err(|e| bad(format!("`{name}`: {e}")))?;
            if t.dtype() != dtype {
                return Err(bad(format!(
                    "`{name}` is {:?}, expected {dtype:?}",
                    t.dtype()
                )));
            }
            Ok(t.data())
        };
        let indptr = raw("indptr", Dtype::U64)?
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("chunks of 8")))
            .collect();
        let indices = from_le_u32(raw("indices", Dtype::U32)?);
        let values = from_le_u32(raw("values", Dtype::U32)?);
        Self::from_csr(data_type, codes, patient_ids, indptr, indices, values)
            .map_err(|e| bad(e.to_string()))
    }
}

fn le_bytes_u64(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn le_bytes_u32(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn from_le_u32(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("chunks of 4")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> PatientMatrix {
        PatientMatrix::from_csr(
            DataType::Count,
            vec!["a".into(), "b".into(), "c".into()],
            vec!["p1".into(), "p2".into(), "p3".into()],
            vec![0, 2, 2, 3],
            vec![0, 2, 1],
            vec![1, 4, 2],
        )
        .unwrap()
    }

    #[test]
    fn densify_places_values_by_column() {
        let m = small();
        let mut out = Vec::new();
        m.densify_rows(&[2, 0], &mut out);
        assert_eq!(out, vec![0.0, 2.0, 0.0, 1.0, 0.0, 4.0]);
        assert_eq!(m.density(), 3.0 / 9.0);
        assert_eq!(m.max_value(), 4);
        assert_eq!(m.patients_per_code(), vec![1, 1, 1]);
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.medgan.safetensors");
        let m = small();
        m.save(&path).unwrap();
        assert_eq!(PatientMatrix::load(&path).unwrap(), m);
    }

    #[test]
    fn select_rows_keeps_vocabulary() {
        let sub = small().select_rows(&[2]);
        assert_eq!(sub.n_patients(), 1);
        assert_eq!(sub.n_codes(), 3);
        assert_eq!(sub.row(0), (&[1u32][..], &[2u32][..]));
    }

    #[test]
    fn unsorted_columns_are_refused() {
        let err = PatientMatrix::from_csr(
            DataType::Binary,
            vec!["a".into(), "b".into()],
            vec!["p".into()],
            vec![0, 2],
            vec![1, 0],
            vec![1, 1],
        );
        assert!(err.is_err());
    }
}
