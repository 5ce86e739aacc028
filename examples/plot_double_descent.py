"""
Memorization and double descent
===============================

Henighan et al. (2023) train the toy model full-batch on ``T`` points. With few points it
memorizes them: their hidden vectors form a polygon. With many it learns features. In between,
test loss peaks: double descent. This example runs a small version (n = 200 features, six
training-set sizes) in a few seconds; ``superposition.report.double_descent`` runs the larger
one behind the report.
"""

import superposition as sp
from superposition.plot import memorization
from superposition.report.double_descent import sweep

result = sweep([3, 10, 30, 100, 300, 1000], n_instances=4)  # n = 200, S = 0.98
print("test loss peaks at T =", result.peak)
memorization.loss_curve(result.sizes, result.test_loss, result.train_loss, baseline=result.baseline)

# %%
# What the model stores: at small T the training points (data dimensionality), at large T
# the features.
memorization.dimensionality_curve(
    result.sizes, result.data_dimensionality, result.feature_dimensionality
)

# %%
# The hidden vectors of the training points and the feature directions.
memorization.memorization_geometry(
    [result.sizes[0], result.sizes[-1]],
    [result.hidden[0], result.hidden[-1]],
    [result.W[0], result.W[-1]],
)

# %%
# The finite training set itself is an ordinary object:
train = sp.SparseFeatureDataset(100, sparsity=0.97).finite(30, seed=0)
print(train, train.x.shape)
