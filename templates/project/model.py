"""The model: a small MLP classifier. Replace it with yours; train.py only needs forward()."""

import torch.nn as nn


class Net(nn.Module):
    def __init__(self, n_in, n_out, hidden, dropout):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_in, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_out),
        )

    def forward(self, x):
        return self.layers(x)
