"""Synthetic BirdCLEF 2025 competition files in the real layout (train.csv, taxonomy.csv,
sample_submission.csv, train_audio/<label>/<id>.ogg, test_soundscapes/): each species sings
a chirp in its own band over noise, so a model can learn something in a few epochs."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

out = Path(sys.argv[1])
species = ["1139490", "amakin1", "bkmtou1", "compau"]  # labels in BirdCLEF 2025's style
per_species, fs = 10, 32000
rng = np.random.default_rng(0)
rows = []
for k, label in enumerate(species):
    (out / "train_audio" / label).mkdir(parents=True, exist_ok=True)
    for i in range(per_species):
        seconds = rng.uniform(3.0, 8.0)
        t = np.arange(int(seconds * fs)) / fs
        f0 = 1500 + 1500 * k
        song = np.sin(2 * np.pi * (f0 + 400 * np.sin(2 * np.pi * 3 * t)) * t) * (np.sin(2 * np.pi * 0.7 * t) > 0)
        audio = (0.3 * song + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        name = f"{label}/XC{100000 + 100 * k + i}.ogg"
        sf.write(out / "train_audio" / name, audio, fs, format="OGG", subtype="VORBIS")
        rows.append({"primary_label": label, "secondary_labels": "['']", "type": "['call']", "filename": name,
                     "collection": "XC", "rating": 4.0, "url": "", "latitude": 0.0, "longitude": 0.0,
                     "scientific_name": f"Species {k}", "common_name": f"Bird {k}", "author": "synthetic",
                     "license": "CC0"})
pd.DataFrame(rows).to_csv(out / "train.csv", index=False)
pd.DataFrame({"primary_label": species, "inat_taxon_id": range(len(species)),
              "scientific_name": [f"Species {k}" for k in range(len(species))],
              "common_name": [f"Bird {k}" for k in range(len(species))], "class_name": "Aves"}
             ).to_csv(out / "taxonomy.csv", index=False)
pd.DataFrame({"row_id": ["soundscape_0_5"], **{s: [1 / len(species)] for s in species}}
             ).to_csv(out / "sample_submission.csv", index=False)
(out / "test_soundscapes").mkdir(exist_ok=True)
print(f"{len(rows)} clips in {out}")
