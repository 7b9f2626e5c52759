"""The split ASR model's run plan (core/plan.py): the whole model on LibriSpeech test, then the split section."""
from __future__ import annotations

from core.plan import DemoModel, Export, Plan, SplitPoint, SplitSection

PLAN = Plan(
    family="split_asr",
    report="split_asr_librispeech",
    title="Split ASR on LibriSpeech {test_name}",
    corpus="librispeech",
    # lr 3e-3 (the trainer's default) leaves the CTC blank plateau in a few epochs; 600 utterances x 15 epochs at
    # the trainer's default size keep the demo model's training to minutes on a small CPU. The 600 are spread
    # over the split: its first 600 hold only some of the speakers, and the test speakers are new voices.
    model=DemoModel(option="split_asr_ckpt", path="models/split_asr/model.pth",
                    train_record="models/split_asr/model.train.json",
                    train_args=("--epochs", "15", "--spread", "600"), train_args_env="SPLIT_ASR_TRAIN_OPTS",
                    quick_train_args=("--epochs", "2", "--n-cnn", "1", "--n-rnn", "1", "--rnn-dim", "32",
                                      "--limit", "24")),
    export=Export(command="split-asr", model_flag="--checkpoint"),
    test_set="data/split_asr_librispeech_test",
    batch_sizes=(1, 8),
    ray=False,
    split=SplitSection(
        # The seed's autoencoder (96 -> 8 -> 96) trained on MSE alone keeps the boundary's energy but not what
        # this Tail reads from it; trained against what the Tail makes of its quantised code
        # (families/split_asr/ae_task.py) the same size keeps more of that (results/split_asr_codecs.md).
        # More epochs or a heavier Tail term measured no better.
        autoencoder=DemoModel(option="split_asr_autoencoder", path="models/split_asr/autoencoder.pth",
                              trainer_flags=("--autoencoder", "--ae-loss", "task"),
                              train_args=("--epochs", "10", "--spread", "600"),
                              quick_train_args=("--epochs", "2", "--limit", "24")),
        # The model's own Head/Tail (after the Linear, with the autoencoder), and cuts after the residual CNNs
        # and after the first BiGRU.
        points=(SplitPoint("rescnn", "rescnn_layers"), SplitPoint("linear"), SplitPoint("birnn0", "birnn_layers.0")),
        codec_option="split_codec",
        bandwidths="1mbit,10mbit,100mbit", quick_bandwidths="1mbit,100mbit",
        limit=40, quick_limit=4,
        # Where this CPU is the edge, the whole model on it wins at every bandwidth; a ten times slower edge
        # is where moving work to the cloud can pay, and the planner must see it.
        slow_edge_scale=10.0,
        # Without a budget a slow edge makes the planner ship the input spectrogram at two bits and lose most
        # of the words; one point is about the spread of the WER over the profiled utterances.
        max_delta_wer=1.0,
        klt_utterances=150,
        postfilter_steps=3000,
        resnet_table="split_resnet50_partitions",
        resnet_sources=("split/resnet_table.py", "families/resnet/model.py"), quick_resnet_args=("--width", "8", "--images", "8", "--repeats", "1")),
    tables=("precision", "throughput"),
)
