"""Reference solution for logistic.rs's test: L2 logistic regression by dense Newton steps.

Minimises (1/n) sum [log(1 + e^z) - y z] + (l2/2) |w|^2, z = b + X w, b not penalised.
Run: python3 logistic_reference.py (needs numpy only).
"""
import numpy as np

X = np.array([
    [1, 0, 2], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0],
    [0, 1, 3], [1, 1, 1], [0, 0, 0], [1, 0, 1], [0, 1, 1],
], dtype=float)
y = np.array([1, 0, 1, 0, 1, 1, 0, 0, 1, 0], dtype=float)

for l2 in (0.1, 0.01):
    n, d = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    penalty = np.diag([l2] * d + [0.0])
    theta = np.zeros(d + 1)
    for _ in range(100):
        p = 1 / (1 + np.exp(-A @ theta))
        grad = A.T @ (p - y) / n + penalty @ theta
        hess = A.T @ (A * (p * (1 - p))[:, None]) / n + penalty
        theta -= np.linalg.solve(hess, grad)
    print(l2, ", ".join(f"{v:.10f}" for v in theta[:d]), f"b={theta[d]:.10f}")
