//! L2-regularised logistic regression on sparse rows, fitted by Newton's method with conjugate
//! gradients (only Hessian-vector products, so memory stays linear in the non-zero cells).
//!
//! Minimises `(1/n) sum_i [log(1 + e^z_i) - y_i z_i] + (l2/2) |w|^2` with `z_i = b + x_i . w`;
//! the intercept `b` is not penalised. This is scikit-learn's `LogisticRegression` with
//! `C = 1 / (n * l2)`.

/// A sparse row: (feature, value) pairs, features strictly increasing.
pub type SparseRow = Vec<(u32, f64)>;

#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    pub weights: Vec<f64>,
    pub intercept: f64,
}

/// Why no model could be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("no training rows")]
    NoRows,
    #[error("the training labels are all of one class")]
    OneClass,
}

const MAX_NEWTON_STEPS: usize = 100;
const MAX_CG_STEPS: usize = 250;
const GRADIENT_TOLERANCE: f64 = 1e-10;

fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn dot(row: &[(u32, f64)], w: &[f64]) -> f64 {
    row.iter().map(|&(j, v)| w[j as usize] * v).sum()
}

struct Problem<'a> {
    rows: &'a [SparseRow],
    labels: &'a [bool],
    n_features: usize,
    l2: f64,
}

impl Problem<'_> {
    fn scores(&self, w: &[f64], b: f64) -> Vec<f64> {
        self.rows.iter().map(|r| b + dot(r, w)).collect()
    }

    fn objective(&self, w: &[f64], b: f64) -> f64 {
        let n = self.rows.len() as f64;
        let data: f64 = self
            .scores(w, b)
            .iter()
            .zip(self.labels)
            .map(|(&z, &y)| softplus(z) - if y { z } else { 0.0 })
            .sum();
        data / n + 0.5 * self.l2 * w.iter().map(|x| x * x).sum::<f64>()
    }

    /// Gradient (weights then intercept, one vector) and the Hessian's diagonal weights.
    fn gradient(&self, w: &[f64], b: f64) -> (Vec<f64>, Vec<f64>) {
        let n = self.rows.len() as f64;
        let mut g = vec![0.0; self.n_features + 1];
        let mut curvature = Vec::with_capacity(self.rows.len());
        for (row, (&z, &y)) in self
            .rows
            .iter()
            .zip(self.scores(w, b).iter().zip(self.labels))
        {
            let p = sigmoid(z);
            let residual = (p - f64::from(u8::from(y))) / n;
            for &(j, v) in row {
                g[j as usize] += residual * v;
            }
            g[self.n_features] += residual;
            curvature.push(p * (1.0 - p) / n);
        }
        for (gj, wj) in g.iter_mut().zip(w) {
            *gj += self.l2 * wj;
        }
        (g, curvature)
    }

    fn hessian_times(&self, curvature: &[f64], v: &[f64]) -> Vec<f64> {
        let d = self.n_features;
        let mut out = vec![0.0; d + 1];
        for (row, &c) in self.rows.iter().zip(curvature) {
            let u = c * (dot(row, &v[..d]) + v[d]);
            for &(j, x) in row {
                out[j as usize] += u * x;
            }
            out[d] += u;
        }
        for j in 0..d {
            out[j] += self.l2 * v[j];
        }
        out
    }
}

fn inner(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fits the model; `rows[i]` has label `labels[i]`, features below `n_features`.
pub fn fit(
    rows: &[SparseRow],
    labels: &[bool],
    n_features: usize,
    l2: f64,
) -> Result<Logistic, FitError> {
    if rows.is_empty() {
        return Err(FitError::NoRows);
    }
    let positives = labels.iter().filter(|&&y| y).count();
    if positives == 0 || positives == labels.len() {
        return Err(FitError::OneClass);
    }
    let problem = Problem {
        rows,
        labels,
        n_features,
        l2,
    };
    let mut w = vec![0.0; n_features];
    let share = positives as f64 / labels.len() as f64;
    let mut b = (share / (1.0 - share)).ln();
    let mut f = problem.objective(&w, b);
    for _ in 0..MAX_NEWTON_STEPS {
        let (g, curvature) = problem.gradient(&w, b);
        let g_norm = inner(&g, &g).sqrt();
        if g_norm < GRADIENT_TOLERANCE {
            break;
        }
        // Conjugate gradients on H s = -g, stopped early while far from the optimum.
        let tolerance = g_norm * g_norm.sqrt().min(0.5);
        let mut s = vec![0.0; n_features + 1];
        let mut r: Vec<f64> = g.iter().map(|x| -x).collect();
        let mut p = r.clone();
        let mut rr = inner(&r, &r);
        for _ in 0..MAX_CG_STEPS {
            if rr.sqrt() <= tolerance {
                break;
            }
            let hp = problem.hessian_times(&curvature, &p);
            let alpha = rr / inner(&p, &hp);
            for j in 0..s.len() {
                s[j] += alpha * p[j];
                r[j] -= alpha * hp[j];
            }
            let rr_next = inner(&r, &r);
            let beta = rr_next / rr;
            rr = rr_next;
            for j in 0..p.len() {
                p[j] = r[j] + beta * p[j];
            }
        }
        // Backtracking line search (Armijo).
        let slope = inner(&g, &s);
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..40 {
            let w_try: Vec<f64> = w.iter().zip(&s).map(|(a, d)| a + t * d).collect();
            let b_try = b + t * s[n_features];
            let f_try = problem.objective(&w_try, b_try);
            if f_try <= f + 1e-4 * t * slope {
                accepted = Some((w_try, b_try, f_try));
                break;
            }
            t /= 2.0;
        }
        let Some((w_next, b_next, f_next)) = accepted else {
            break;
        };
        let progress = f - f_next;
        (w, b, f) = (w_next, b_next, f_next);
        if progress <= 1e-16 * f.abs().max(1.0) {
            break;
        }
    }
    Ok(Logistic {
        weights: w,
        intercept: b,
    })
}

impl Logistic {
    /// Probability of the positive class.
    pub fn predict(&self, row: &[(u32, f64)]) -> f64 {
        sigmoid(self.intercept + dot(row, &self.weights))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed problem of `testdata/logistic_reference.py` (keep the two in step).
    fn reference_problem() -> (Vec<SparseRow>, Vec<bool>) {
        let dense: [[f64; 3]; 10] = [
            [1.0, 0.0, 2.0],
            [0.0, 1.0, 0.0],
            [1.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 3.0],
            [1.0, 1.0, 1.0],
            [0.0, 0.0, 0.0],
            [1.0, 0.0, 1.0],
            [0.0, 1.0, 1.0],
        ];
        let labels = [1, 0, 1, 0, 1, 1, 0, 0, 1, 0].map(|y| y == 1).to_vec();
        let rows = dense
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .filter(|(_, v)| **v != 0.0)
                    .map(|(j, &v)| (j as u32, v))
                    .collect()
            })
            .collect();
        (rows, labels)
    }

    #[test]
    fn agrees_with_independent_newton_solver() {
        let (rows, labels) = reference_problem();
        // Printed by testdata/logistic_reference.py (numpy, dense Newton steps).
        for (l2, expected_w, expected_b) in [
            (
                0.1,
                [0.9661257165, -0.2911972398, 0.5369447542],
                -0.8196581185,
            ),
            (
                0.01,
                [2.7341045442, -0.8157128105, 1.1226908104],
                -1.9809483732,
            ),
        ] {
            let model = fit(&rows, &labels, 3, l2).unwrap();
            for (got, want) in model.weights.iter().zip(expected_w) {
                assert!((got - want).abs() < 1e-8, "l2 {l2}: {got} != {want}");
            }
            assert!((model.intercept - expected_b).abs() < 1e-8, "l2 {l2}");
        }
    }

    #[test]
    fn degenerate_labels_are_refused() {
        let (rows, _) = reference_problem();
        assert_eq!(fit(&rows, &[true; 10], 3, 0.1), Err(FitError::OneClass));
        assert_eq!(fit(&[], &[], 3, 0.1), Err(FitError::NoRows));
    }
}
