"""Write tests/data/v1/: checkpoints in the format of pycharrnn 0.1.0 as it
was before the run directory got one owner (commit dbd6dbb). Run by hand with
that version installed: ``python tests/make_v1_checkpoints.py OUT_DIR``.

- step10.npz: a training checkpoint (LSTM 2 x 16, embedding 6, dropout 0.1,
  Adam with clip_norm, a cosine schedule) after 10 steps on TEXT;
- step20_params.npy: that run's flat parameters after 20 steps (the same
  run, never interrupted), so a resume from step 10 can be checked bit for bit;
- model.npz: a model saved with CharRNN.save (no training state).
"""

import sys
from pathlib import Path

import numpy as np

import pycharrnn as pc

TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness, it was the epoch of belief... ") * 12


def trainer(ckdir):
    m = pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=16, num_layers=2, cell="lstm",
                   embedding_dim=6, dropout=0.1, seed=5)
    opt = pc.optim.Adam(m, lr=3e-3, clip_norm=1.0)
    from pycharrnn import schedule as sch
    return pc.Trainer(m, TEXT, batch_size=4, seq_length=16, optimizer=opt,
                      schedule=sch.CosineWarmup(3e-3, total_steps=40, warmup_steps=3),
                      eval_every=4, checkpoint_dir=ckdir, checkpoint_every=10)


def main(out: str) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tr = trainer(out / "run")
    tr.run(steps=10)
    (out / "run" / "latest.npz").rename(out / "step10.npz")
    tr.run(steps=10)
    np.save(out / "step20_params.npy", tr.model.flat_params)
    tr.model.save(out / "model.npz")
    for f in (out / "run").iterdir():
        f.unlink()
    (out / "run").rmdir()


if __name__ == "__main__":
    main(sys.argv[1])
