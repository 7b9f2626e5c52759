"""Command-line flags that override the hyper-parameters inferred from a model.pth (shared by the CLIs).

`add_arguments`/`load_options` are the family's `python -m export split-asr` options (core.family.ExportCommand).
"""
from __future__ import annotations

import argparse


def add_override_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hyper-parameters (inferred from the state_dict's tensor shapes unless given)")
    g.add_argument("--n-cnn", type=int, help="residual CNN blocks")
    g.add_argument("--n-rnn", type=int, help="BiGRU blocks")
    g.add_argument("--rnn-dim", type=int, help="width of the Head's output and of each GRU direction")
    g.add_argument("--n-feats", type=int, help="mel bands of the input (torchaudio's default is 128)")
    g.add_argument("--n-class", type=int, help="output classes (29: ' space a-z blank)")


def overrides_from(args: argparse.Namespace) -> dict[str, int | None]:
    return {"n_cnn_layers": args.n_cnn, "n_rnn_layers": args.n_rnn, "rnn_dim": args.rnn_dim,
            "n_feats": args.n_feats, "n_class": args.n_class}


add_arguments = add_override_arguments
load_options = overrides_from
