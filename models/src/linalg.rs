//! Small dense linear algebra for the per-host PCA: a symmetric eigen-decomposition by cyclic
//! Jacobi rotations. Matrices are row-major `n x n` `f64` slices; `n` is a host's metric count
//! (tens, at most a few hundred), and the decomposition runs once per calibration.

/// Eigenvalues (descending) and unit eigenvectors (`vectors[i]` belongs to `values[i]`) of the
/// symmetric matrix `a` (`n x n`, row-major). Deterministic: fixed sweep order, fixed tolerances.
pub(crate) fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut m = a.to_vec();
    if m.len() != n * n || n == 0 {
        return (Vec::new(), Vec::new());
    }
    // v starts as the identity; columns become the eigenvectors
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = m.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..64 {
        let mut off = 0.0;
        for p in 0..n {
            for q in p + 1..n {
                off += m[p * n + q] * m[p * n + q];
            }
        }
        if off <= 1e-22 * total {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let app = m[p * n + p];
                let aqq = m[q * n + q];
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // rotate rows/columns p and q of m
                for k in 0..n {
                    let mkp = m[k * n + p];
                    let mkq = m[k * n + q];
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let mpk = m[p * n + k];
                    let mqk = m[q * n + k];
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    // descending eigenvalue, ties by index: deterministic
    order.sort_by(|&i, &j| m[j * n + j].total_cmp(&m[i * n + i]).then(i.cmp(&j)));
    let values = order.iter().map(|&i| m[i * n + i]).collect();
    let vectors = order
        .iter()
        .map(|&i| (0..n).map(|k| v[k * n + i]).collect())
        .collect();
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_of_known_matrices() {
        // (matrix, n, expected eigenvalues descending)
        let cases: &[(&[f64], usize, &[f64])] = &[
            (&[2.0, 0.0, 0.0, 1.0], 2, &[2.0, 1.0]),
            (&[2.0, 1.0, 1.0, 2.0], 2, &[3.0, 1.0]),
            (
                &[4.0, 1.0, 0.0, 1.0, 3.0, 1.0, 0.0, 1.0, 2.0],
                3,
                &[4.732_050_807_568_877, 3.0, 1.267_949_192_431_123],
            ),
        ];
        for (a, n, want) in cases {
            let (vals, vecs) = symmetric_eigen(a, *n);
            for (g, w) in vals.iter().zip(want.iter()) {
                assert!((g - w).abs() < 1e-9, "{vals:?} vs {want:?}");
            }
            // A v = lambda v
            for (lambda, vec) in vals.iter().zip(&vecs) {
                for r in 0..*n {
                    let av: f64 = (0..*n).map(|k| a[r * n + k] * vec[k]).sum();
                    assert!((av - lambda * vec[r]).abs() < 1e-9);
                }
            }
        }
    }
}
