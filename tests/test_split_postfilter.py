"""The KLT codec's decoder-side post-filter: training CLI, the -pf codec, and what each side must hold."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from split.codecs import CodecError, Learned, codec_names, get_codec
from split.codecs.klt import KLT_FILE, fit_klt, load_klt

PF = "klt_postfilter_4x.onnx"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny split pair with klt.json and a post-filter trained for a few steps; its dataset."""
    from split.__main__ import main
    from tests.split_helpers import make_dataset, make_split_pair

    tmp = tmp_path_factory.mktemp("pf")
    pair = make_split_pair(tmp / "pair", autoencoder=False)
    ds = make_dataset(tmp / "ds", count=6)
    assert main(["fit-klt", "--head", str(pair / "head.onnx"), "--dataset", str(ds), "--out", str(pair / KLT_FILE),
                 "--relative-step", "0.2", "--no-progress"]) == 0
    assert main(["fit-postfilter", "--head", str(pair / "head.onnx"), "--dataset", str(ds), "--learned", str(pair),
                 "--steps", "60", "--crop", "8", "--hidden", "16", "--no-progress"]) == 0
    return pair, ds


def _boundary(pair: Path, ds: Path) -> np.ndarray:
    from split.edge import HeadModel, utterances_from_dataset

    head = HeadModel(pair / "head.onnx")
    utt = next(iter(utterances_from_dataset(ds, head.input.name)))
    return head.run(utt.features, utt.length)[0]


def test_postfilter_decodes_the_plain_codecs_payload_closer(fitted: tuple[Path, Path]) -> None:
    pair, ds = fitted
    learned = Learned.from_dir(pair)
    assert "4x" in learned.postfilters and "klt-ans-4x-pf" in codec_names(learned)
    plain, pf = get_codec("klt-ans-4x", learned), get_codec("klt-ans-4x-pf", learned)
    x = _boundary(pair, ds)
    a, b = plain.encode(x), pf.encode(x)
    assert a.payload == b.payload and a.params == b.params  # the wire is the plain codec's
    y_plain = plain.decode(a.payload, a.params, x.shape)
    y_pf = pf.decode(a.payload, a.params, x.shape)
    assert y_pf.shape == x.shape and not np.array_equal(y_pf, y_plain)
    fit = load_klt(pair / KLT_FILE)

    def weighted(y: np.ndarray) -> float:
        return float((((y - x) @ fit.forward) ** 2).mean())

    # Trained on these utterances: the filter must bring the decoded boundary closer in the fit's metric.
    assert weighted(y_pf) < weighted(y_plain)


def test_edge_encodes_without_the_filter_and_a_cloud_without_it_says_so(fitted: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    pair, ds = fitted
    edge = tmp_path / "edge"
    edge.mkdir()
    shutil.copy(pair / KLT_FILE, edge / KLT_FILE)
    assert "klt-ans-4x-pf" not in codec_names(Learned.from_dir(edge))
    codec = get_codec("klt-ans-4x-pf", edge)
    x = _boundary(pair, ds)
    enc = codec.encode(x)
    assert get_codec("klt-ans-4x-pf", pair).decode(enc.payload, enc.params, x.shape).shape == x.shape
    with pytest.raises(CodecError, match=f"no {PF}"):
        codec.decode(enc.payload, enc.params, x.shape)


def test_filter_trained_with_another_fit_is_refused(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    pair, _ = fitted
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(pair / PF, other / PF)
    rng = np.random.default_rng(0)
    fit_klt(rng.standard_normal((50, 12)), relative_step=0.1).save(other / KLT_FILE)
    with pytest.raises(ValueError, match="trained with another klt.json"):
        Learned.from_dir(other)
    (other / KLT_FILE).unlink()
    with pytest.raises(ValueError, match="without klt.json"):
        Learned.from_dir(other)


def test_fit_postfilter_replaces_a_filter_of_an_earlier_fit(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    """After fit-klt refits, the old filter no longer matches klt.json; retraining it must still work."""
    from split.__main__ import main

    pair, ds = fitted
    work = tmp_path / "pair"
    shutil.copytree(pair, work)
    assert main(["fit-klt", "--head", str(work / "head.onnx"), "--dataset", str(ds), "--out", str(work / KLT_FILE),
                 "--relative-step", "0.1", "--no-progress"]) == 0
    with pytest.raises(ValueError, match="trained with another klt.json"):
        Learned.from_dir(work)
    assert main(["fit-postfilter", "--head", str(work / "head.onnx"), "--dataset", str(ds), "--learned", str(work),
                 "--steps", "5", "--crop", "8", "--hidden", "16", "--no-progress"]) == 0
    assert "klt-ans-4x-pf" in codec_names(Learned.from_dir(work))


def test_fit_postfilter_bad_input(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    from split.__main__ import main

    pair, ds = fitted
    assert main(["fit-postfilter", "--head", str(pair / "head.onnx"), "--dataset", str(ds), "--learned",
                 str(tmp_path), "--no-progress"]) == 2  # no klt.json there
    assert main(["fit-postfilter", "--head", str(pair / "head.onnx"), "--dataset", str(ds), "--learned",
                 str(pair), "--kernel", "4", "--no-progress"]) == 2


def test_the_post_filter_steps_are_listed_alike_in_all_three_places() -> None:
    """fit-postfilter's --coarseness choices, the -pf codecs of the registry and the steps run_all trains
    filters for are three lists (the CLI keeps --help free of the codec imports; the pipeline does not import
    split/); they must name the same steps, or a codec would have no way to get its filter."""
    from pipeline.run_all import load_plan
    from split.codecs import CODECS
    from split.codecs.klt import coarseness_tag
    from split.fit_postfilter_cmd import SUPPORTED

    registered = {spec.postfilter for spec in CODECS.values() if spec.postfilter}
    assert registered == {coarseness_tag(c) for c in SUPPORTED}
    section = load_plan("split_asr").split
    assert section is not None and section.postfilter_steps
    assert registered == {coarseness_tag(c) for c in section.postfilter_coarseness}
