"""One rank of the distributed tests (tests/test_distributed.py launches it with
``mpiexec -n 2``, or alone for world size 1): ``python dist_worker.py SCENARIO OUT [args]``.

Scenarios: ``train`` (fit + evaluate + predict on the digits, per-step weight checksums, rank-0
files), ``resume`` (load a checkpoint and train on), ``mismatch`` (rank 1 uses another seed),
``diffdata`` (the ranks read different batches), ``raise`` (rank 1 raises mid-epoch), ``hang``
(rank 1 stops answering), ``kill`` (rank 1 dies), ``sigint`` / ``stop`` (Ctrl-C or
stop_training on rank 1 only), ``loop`` (a custom loop with attach /
shard_batches / allreduce_gradients). Each rank writes its diagnostics to
``OUT/diag_<rank>.json`` / ``.npz``; fit's own files go to ``OUT/files``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import zlib

import numpy as np

import fastcnn as fc
from fastcnn import distributed as dist
from fastcnn.callbacks import Callback, CSVLogger, ModelCheckpoint


def data(n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    (x, y), (xt, yt) = fc.datasets.load_digits()
    return x[:n], y[:n], xt[:101], yt[:101]


def model(seed: int = 0, optimizer: str = "adam") -> fc.Sequential:
    m = fc.models.seeds_cnn((1, 8, 8), padding="same", seed=seed)
    opt = fc.optimizers.Adam(1e-3) if optimizer == "adam" else fc.optimizers.SGD(0.05)
    m.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def crc(m: fc.Sequential) -> int:
    return zlib.crc32(b"".join(np.ascontiguousarray(w).tobytes() for w in m.get_weights()))


class StepLog(Callback):
    """Records a checksum of the weights after every step; optionally misbehaves on rank 1."""

    def __init__(self, fault: str = "", at: int = 3) -> None:
        super().__init__()
        self.crcs: list[int] = []
        self.fault, self.at = fault, at

    def on_train_batch_end(self, batch, logs=None):
        self.crcs.append(crc(self.model))
        if dist.rank() == 1 and len(self.crcs) == self.at:
            if self.fault == "raise":
                raise RuntimeError("injected failure on rank 1")
            if self.fault == "hang":
                time.sleep(120)
            if self.fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.fault == "sigint":  # Ctrl-C reaching this rank only
                os.kill(os.getpid(), signal.SIGINT)
            if self.fault == "stop":  # a callback stopping training on this rank only
                self.model.stop_training = True


def save_diag(out: str, **kw: object) -> None:
    r = dist.rank()
    arrays = {k: v for k, v in kw.items() if isinstance(v, np.ndarray)}
    rest = {k: v for k, v in kw.items() if not isinstance(v, np.ndarray)}
    np.savez(os.path.join(out, f"diag_{r}.npz"), **arrays)
    with open(os.path.join(out, f"diag_{r}.json"), "w") as f:
        json.dump(rest, f)


def main() -> int:
    scenario, out = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    timeout = float(os.environ.get("WORKER_TIMEOUT", "60"))
    world = dist.init(timeout=timeout)
    r = dist.rank()
    files = os.path.join(out, "files")
    os.makedirs(files, exist_ok=True)
    x, y, xt, yt = data()
    batch = int(args[0]) if args else 32
    if scenario == "train":
        m = model()
        log = StepLog()
        cbs = [log, ModelCheckpoint(os.path.join(files, f"ckpt_r{r}_{{epoch}}.npz"),
                                    save_weights_only=False),
               CSVLogger(os.path.join(files, f"log_r{r}.csv"))]
        h = m.fit(x, y, batch_size=batch, epochs=2, seed=0, verbose=1, callbacks=cbs,
                  validation_data=(xt, yt))
        ev = m.evaluate(xt, yt, batch_size=32, return_dict=True)
        pred = m.predict(xt, batch_size=32)
        if dist.is_main():
            m.save(os.path.join(files, "final.npz"))
        w = np.concatenate([a.ravel() for a in m.get_weights()])
        save_diag(out, weights=w, pred=pred, crcs=log.crcs, history=h.history, eval=ev,
                  world=world)
    elif scenario == "batchnorm":  # per-shard batch statistics, moving statistics averaged
        m = fc.Sequential([fc.layers.Conv2D(4, 3, use_bias=False), fc.layers.BatchNormalization(),
                           fc.layers.ReLU(), fc.layers.GlobalAveragePooling2D(),
                           fc.layers.Dense(10, activation="softmax")],
                          input_shape=x.shape[1:], seed=0)
        m.compile(fc.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
        for _ in range(2):  # a second fit checks the ranks again: they must still agree
            m.fit(x, y, batch_size=batch, epochs=1, seed=0, verbose=0)
        bn = m.layers[1]
        save_diag(out, moving=np.concatenate([bn.params["moving_mean"],
                                              bn.params["moving_variance"]]), world=world)
    elif scenario == "resume":
        m = fc.load_model(args[1])
        h = m.fit(x, y, batch_size=batch, epochs=2, initial_epoch=1, seed=0, verbose=0)
        w = np.concatenate([a.ravel() for a in m.get_weights()])
        save_diag(out, weights=w, history=h.history, world=world)
    elif scenario == "mismatch":
        m = model(seed=r)
        m.fit(x, y, batch_size=batch, epochs=1, seed=0, verbose=0)
    elif scenario == "diffdata":  # each rank shuffles with its own seed: caught
        perm = np.random.default_rng(r).permutation(len(x))
        model().fit(x[perm], y[perm], batch_size=batch, shuffle=False, verbose=0)
    elif scenario in ("sigint", "stop"):
        m = model()
        log = StepLog(scenario)
        h = m.fit(x, y, batch_size=batch, epochs=2, seed=0, verbose=0, callbacks=[log])
        save_diag(out, crcs=log.crcs, interrupted=h.interrupted, world=world)
    elif scenario in ("raise", "hang", "kill"):
        m = model()
        m.fit(x, y, batch_size=batch, epochs=2, seed=0, verbose=0,
              callbacks=[StepLog(scenario)])
    elif scenario == "loop":
        m = model(optimizer="sgd")
        reducer = dist.attach(m, bucket_mb=0.01)  # several buckets for this small model
        rng = np.random.default_rng(0)
        crcs = []
        for _ in range(2):
            order = rng.permutation(len(x))
            batches = ((x[order[i:i + batch]], y[order[i:i + batch]])
                       for i in range(0, len(x), batch))
            for xb, yb in dist.shard_batches(batches):
                fc.train_step(m, xb, yb)
                crcs.append(crc(m))
        stats = dict(reducer.stats)
        dist.detach(m)
        # the manual form: backward, allreduce_gradients, step (no hooks)
        out_ = m(x[:batch][r::world], training=True)
        _, d = m.loss.value_and_grad(out_, y[:batch][r::world])
        m.backward(d, compute_dx=False)
        dist.allreduce_gradients(m)
        m.optimizer.step(m)
        crcs.append(crc(m))
        total = dist.allreduce_sum([r + 1.0])
        w = np.concatenate([a.ravel() for a in m.get_weights()])
        save_diag(out, weights=w, crcs=crcs, stats=stats, total=float(total[0]), world=world)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    dist.barrier()
    dist.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
