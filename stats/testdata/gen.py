# Regenerates wilcoxon.json and huber.json, the reference values of stats_test.go:
#   python3 gen.py   (Debian 12: python3-scipy 1.10.1, python3-sklearn 1.2.1)
# The tests do not run this script.
import json
import warnings

import numpy as np
from scipy.stats import wilcoxon
from sklearn.linear_model import HuberRegressor

warnings.simplefilter("ignore")



def dump(cases, name):
    with open(name, "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(c) for c in cases) + "\n]\n")


w = []


def add(name, x, y, method="auto"):
    r = wilcoxon(x, y, method=method)
    w.append(dict(name=name, x=list(map(float, x)), y=list(map(float, y)),
                  statistic=float(r.statistic), pvalue=float(r.pvalue)))


d = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]
add("scipy docs example (exact)", d, [0] * len(d))
add("all positive (exact)", [1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 0, 0.5])
add("one pair (exact)", [3], [1])
add("centre of the distribution (exact)", [1, -2, -3, 4], [0, 0, 0, 0])
add("zeros (approx)", list(range(1, 13)), [1, 2, 2, 3, 6, 1, 6, 6, 0, 14, 10, 0.5])
# scipy 1.10 keeps the exact distribution here (with a truncated R+); egg and later scipy
# versions do not: the reference is the normal approximation.
add("ties at n <= 50 (approx)", [1, 2, 2, 3, 4, 5, -6, 7], [0] * 8, method="approx")
rng = np.random.default_rng(3)
a, b = np.round(rng.normal(1, 1, 60), 1), np.round(rng.normal(0.8, 1, 60), 1)
add("n 60, ties and zeros (approx)", a, b)
a = rng.normal(5, 2, 51)
add("n 51 (approx)", a, a * 1.1 + rng.normal(0, 1, 51))
a = rng.normal(5, 2, 50)
add("n 50 (exact)", a, a * 1.05 + rng.normal(0, 1, 50))
dump(w, "wilcoxon.json")

h = []


def addh(name, x, y):
    X = np.asarray(x, float)[:, None]
    default = HuberRegressor(fit_intercept=False).fit(X, y)
    h.append(dict(name=name, x=list(map(float, x)), y=list(map(float, y)),
                  slope=float(default.coef_[0]), scale=float(default.scale_)))


addh("outliers", list(range(1, 11)), [2.1, 3.9, 6.2, 8.1, 9.8, 12.2, 13.9, 16.1, 40, -5])
rng = np.random.default_rng(7)
x = rng.gamma(2, 2, 40)
y = 1.3 * x + rng.normal(0, 0.5, 40)
y[:4] += 10
addh("gamma 40, 4 outliers", x, y)
x = rng.normal(0, 1, 90)
addh("t noise 90", x, -0.7 * x + rng.standard_t(2, 90))
x = rng.gamma(3, 1, 90)
addh("activations 90", x, 1.2 * x * np.exp(rng.normal(0, 0.3, 90)))
dump(h, "huber.json")
