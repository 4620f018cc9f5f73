"""Data processing functions and the Dataset: small functions, easy to call from anywhere.

By default the data are synthetic and deterministic (no download): a table with an id
column, numeric features and a class target, the same shape a tabular Kaggle dataset has.
Set Config.dataset = "owner/slug" to read Config.data_file from that dataset instead.
"""

import random

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from config import Config
from utils import RunError, input_path


def make_synthetic(n_example, n_feature, n_class, seed, with_target=True):
    """Labels from a fixed random "teacher" network, 5% flipped: learnable, but not in one epoch."""
    teacher = np.random.default_rng(0)  # the same task for every seed
    w1 = teacher.normal(0.0, 1.0, size=(n_feature, 32))
    w2 = teacher.normal(0.0, 1.0, size=(32, n_class))
    rng = np.random.default_rng(seed)
    features = rng.normal(0.0, 1.0, size=(n_example, n_feature))
    target = np.argmax(np.tanh(features @ w1) @ w2, axis=1)
    flip = rng.random(n_example) < 0.05
    target[flip] = rng.integers(0, n_class, size=flip.sum())
    table = pd.DataFrame(features.astype("float32"), columns=[f"f{i}" for i in range(n_feature)])
    table.insert(0, Config.id_column, np.arange(n_example))
    if with_target:
        table[Config.target_column] = target
    return table


def load_tables():
    """(train table, test table): from Config.dataset when set, else synthetic."""
    if Config.dataset is None:
        train = make_synthetic(Config.full_n_example, Config.n_feature, Config.n_class, Config.seed)
        test = make_synthetic(1000, Config.n_feature, Config.n_class, Config.seed + 1, with_target=False)
        return train, test
    train = pd.read_csv(input_path("dataset", Config.dataset, Config.data_file))
    try:
        test = pd.read_csv(input_path("dataset", Config.dataset, Config.test_file))
    except FileNotFoundError:
        test = None
    return train, test


def feature_columns(table):
    """Every numeric column except the id and the target."""
    skip = {Config.id_column, Config.target_column}
    return [c for c in table.columns if c not in skip and pd.api.types.is_numeric_dtype(table[c])]


def check_finite(table, columns, name, allow_nan=False):
    """Refuse NaN / infinite inputs, naming the columns: one NaN feature makes every loss NaN."""
    values = table[columns].to_numpy(dtype="float64")
    bad = np.isinf(values) if allow_nan else ~np.isfinite(values)
    problems = []
    for index in np.flatnonzero(bad.any(axis=0)):
        column = values[:, index]
        n_nan, n_inf = int(np.isnan(column).sum()), int(np.isinf(column).sum())
        parts = ([f"{n_nan} NaN"] if n_nan and not allow_nan else []) + ([f"{n_inf} inf"] if n_inf else [])
        problems.append(f"{columns[index]} ({', '.join(parts)})")
    if Config.target_column in table and table[Config.target_column].isna().any():
        missing = int(table[Config.target_column].isna().sum())
        problems.append(f"{Config.target_column} (the target: {missing} missing)")
    if problems:
        rows = int(bad.any(axis=1).sum())
        fix = ("drop or clip the infinite values in data.py" if allow_nan else
               'set Config.fill_missing = "median" to fill NaN features with the training median, or '
               "clean the table in data.py (fillna / dropna)")
        raise RunError(f"{name}: non-finite values in {len(problems)} column(s): {'; '.join(problems)}"
                       f" ({rows} of {len(table)} rows). Training on them gives a NaN loss: {fix}.")


def split(table, n_example, val_ratio, seed):
    """The first n_example rows (shuffled with the seed), cut into train and validation parts."""
    table = table.sample(frac=1.0, random_state=seed).head(n_example).reset_index(drop=True)
    n_val = max(1, int(len(table) * val_ratio))
    return table.iloc[n_val:].reset_index(drop=True), table.iloc[:n_val].reset_index(drop=True)


def standardise(train, others, columns):
    """Scale features with the training part's mean and std (no peeking at validation data).

    With Config.fill_missing = "median", NaN features are first filled with the training part's median.
    """
    if Config.fill_missing == "median":
        median = train[columns].median()
        train, others = train.fillna(median), [None if t is None else t.fillna(median) for t in others]
    elif Config.fill_missing is not None:
        raise RunError(f'Config.fill_missing = {Config.fill_missing!r}: use None or "median"')
    mean, std = train[columns].mean(), train[columns].std().replace(0, 1.0)
    scale = lambda t: t.assign(**{c: (t[c] - mean[c]) / std[c] for c in columns})  # noqa: E731
    return scale(train), [None if t is None else scale(t) for t in others]


class TableDataset(Dataset):
    """Rows of a table as (features, target) tensors; target -1 when the table has none.

    augment=True (the training part) applies augment() to each row it returns.
    """

    def __init__(self, table, columns, classes, augment=False):
        self.augment_rows = augment
        self.x = torch.tensor(table[columns].to_numpy(dtype="float32"))
        if Config.target_column in table:
            codes = table[Config.target_column].map({c: i for i, c in enumerate(classes)})
            self.y = torch.tensor(codes.to_numpy(dtype="int64"))
        else:
            self.y = torch.full((len(table),), -1, dtype=torch.int64)
        self.ids = table[Config.id_column].to_numpy() if Config.id_column in table else np.arange(len(table))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, index):
        x = self.x[index]
        return (self.augment(x) if self.augment_rows else x), self.y[index]

    def augment(self, x):
        """Random augmentation of one training row: put yours here.

        It may draw from numpy's, Python's or torch's global RNG: the checkpoint saves all their
        states, so a resumed run draws the same numbers as an uninterrupted one (with num_workers > 0,
        PyTorch seeds each worker's RNGs from the loader's generator, which is reseeded every epoch).
        """
        if Config.aug_noise_std > 0:
            noise = np.random.normal(0.0, Config.aug_noise_std, size=x.shape).astype("float32")
            x = x + torch.from_numpy(noise)
        if Config.aug_drop_prob > 0 and random.random() < Config.aug_drop_prob:
            x = x.clone()
            x[random.randrange(len(x))] = 0.0  # the standardised mean
        return x
