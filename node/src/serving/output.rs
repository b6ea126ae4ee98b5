//! What a model returned, checked before anything indexes it: one row per input and one
//! column per class. A model file is untrusted (TorchScript is code), so a wrong shape is a
//! typed error, never a panic.

use crate::error::JobError;
use bus_schemas::infer::Prediction;

/// Checks a model's output shape `size` for `inputs` inputs of a model with `classes` class
/// names (0: unknown, any positive count accepted); returns the number of columns.
pub fn check_shape(size: &[i64], inputs: usize, classes: usize) -> Result<usize, JobError> {
    let bad = |why: String| Err(JobError::BadInput(format!("the model returned {why}")));
    let [rows, cols] = size else {
        return bad(format!(
            "an output of shape {size:?} for {inputs} inputs (expected [{inputs}, classes])"
        ));
    };
    if usize::try_from(*rows).ok() != Some(inputs) {
        return bad(format!("{rows} rows for {inputs} inputs"));
    }
    let Some(cols) = usize::try_from(*cols).ok().filter(|&c| c >= 1) else {
        return bad(format!("{cols} columns (at least 1 class is needed)"));
    };
    if classes > 0 && cols != classes {
        return bad(format!("{cols} columns for a model of {classes} classes"));
    }
    Ok(cols)
}

/// One prediction per row of `probs` (`rows x classes`).
pub fn predictions(probs: &[f32], classes: usize, names: &[String]) -> Vec<Prediction> {
    probs
        .chunks_exact(classes.max(1))
        .map(|row| {
            let (best, score) = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, s)| (i, *s))
                .unwrap_or((0, 0.0));
            Prediction {
                class: best as i64,
                class_name: names.get(best).cloned().unwrap_or_else(|| best.to_string()),
                score,
                scores: row.to_vec(),
            }
        })
        .collect()
}

/// Splits a batch's predictions into one list per request of `sizes` images; `None` when
/// they do not add up (never a panic).
pub fn split_by_request(mut all: Vec<Prediction>, sizes: &[usize]) -> Option<Vec<Vec<Prediction>>> {
    let total = sizes.iter().try_fold(0usize, |t, n| t.checked_add(*n))?;
    if total != all.len() {
        return None;
    }
    let mut out = Vec::with_capacity(sizes.len());
    for n in sizes.iter().rev() {
        out.push(all.split_off(all.len() - n));
    }
    out.reverse();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn predictions_pick_the_most_probable_class() {
        let names = vec!["a".to_string(), "b".to_string()];
        let p = predictions(&[0.2, 0.8, 0.9, 0.1], 2, &names);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].class, p[0].class_name.as_str()), (1, "b"));
        assert_eq!((p[1].class, p[1].score), (0, 0.9));
        assert_eq!(predictions(&[0.1, 0.2, 0.7], 3, &[])[0].class_name, "2");
    }

    #[test]
    fn a_wrong_output_shape_is_a_typed_error_naming_it() {
        assert_eq!(check_shape(&[64, 10], 64, 10).unwrap(), 10);
        assert_eq!(check_shape(&[64, 3], 64, 0).unwrap(), 3);
        let e = check_shape(&[3, 10], 64, 10).unwrap_err();
        assert!(matches!(e, JobError::BadInput(_)));
        assert_eq!(e.to_string(), "the model returned 3 rows for 64 inputs");
        for size in [&[64, 0][..], &[64, -1], &[64, 9], &[64], &[64, 10, 1], &[]] {
            assert!(check_shape(size, 64, 10).is_err(), "{size:?}");
        }
        assert!(check_shape(&[-1, 10], usize::MAX, 10).is_err());
    }

    #[test]
    fn predictions_split_by_request_only_when_they_add_up() {
        let all = predictions(&[0.1, 0.9, 0.8, 0.2, 0.5, 0.5], 2, &[]);
        let parts = split_by_request(all.clone(), &[1, 2]).unwrap();
        assert_eq!((parts[0].len(), parts[1].len()), (1, 2));
        assert_eq!(parts[0][0].class, 1);
        assert!(split_by_request(all.clone(), &[2, 2]).is_none());
        assert!(split_by_request(all, &[usize::MAX, 4]).is_none());
    }

    proptest! {
        #[test]
        fn any_shape_is_checked_without_panic(
            size in proptest::collection::vec(any::<i64>(), 0..4),
            inputs in any::<usize>(), classes in 0usize..20,
        ) {
            if let Ok(cols) = check_shape(&size, inputs, classes) {
                prop_assert_eq!(size.len(), 2);
                prop_assert_eq!(size[0] as usize, inputs);
                prop_assert!(cols >= 1);
            }
        }

        #[test]
        fn any_probabilities_give_one_prediction_per_full_row(
            probs in proptest::collection::vec(any::<f32>(), 0..64), classes in 0usize..8,
        ) {
            let p = predictions(&probs, classes, &[]);
            prop_assert_eq!(p.len(), probs.len() / classes.max(1));
        }
    }
}
