"""20 Newsgroups: Grimm et al., section 5.3, Tables 1-2 (appendix C).

Prepares the TFDS dataset ``twenty_newsgroups`` from ``20news-bydate.tar.gz``
(manual dir ``../shared/data/20news`` if it is there, else a download), then
trains the Deep Averaging Network F (embedding 50, hidden 200 and 150 with
ReLU and dropout, 20 classes; Adam, batch 32) and the LAN A on the frozen F
(FC(100, l-ReLU), FC(1000, l-ReLU), FC(vocab, sigmoid); beta = 50; Adam
1e-3), and writes tables.md / tables.png (Tables 1-2 and one document per
class), comparison.md / deletion_curve.png (every attribution method ranking
the documents' words) and metrics.json.

Noise H (the default changed, issue 10). The paper's constant noise 0
(variant ``constant``) only rescales counts, and the DAN averages, so a
uniform mask is free and eq. 3's optimum carries no ranking (measured on the
same F, A 300 steps, 200 test documents: deletion AUC LAN 0.672, random
0.656, gradient x input 0.115; a uniform mask with A's mean costs 0.000 nats
of excess L_F; even the per-example optimisation of eq. 3 gets only 0.609).
The default is ``noise = 'bootstrap'``: training documents rescaled to the
explained document's length (`lanjax.experiments.newsgroups.DocumentNoise`),
which makes a uniform mask cost fidelity (2.76 nats); with it the
per-example optimisation of eq. 3 reaches gradient x input (0.123 vs 0.115),
the amortized A of 300 steps 0.588 (A reading word shares,
``lan.input = 'shares'``: 0.585; its input-specific part, row lan_specific:
0.577). See the measured default below.

Departures from the paper, for a 2-core CPU:
  * F: Adam 1e-3 for 12,000 steps instead of 5e-5 for 1,000,000, with DAN's
    word dropout (0.3) besides dropout 0.5 on the hidden layers: without it
    F overfits after ~2,000 steps (75.9% at best, 75.2% at 12,000).
  * A: 1,500 steps of batch 128 instead of 100,000 (batch not given in the
    paper). A's step time here is mostly its fixed per-step cost (Adam on
    11 M parameters).
  * Vocabulary: the 10,000 most frequent training words (seen >= 2 times),
    UNK for the rest (82.6% of training tokens are in it). A's last layer
    is 1000 x V, so A has 11 M parameters (45 MB, 135 MB with Adam's state)
    and its step time grows with V. The paper's tables show rare names
    (gonzalez, terlep), so its vocabulary was larger;
    --config.data.vocab_size=20000 gives F 79.6% (vs 78.5%).

Reproducibility. F trains and is evaluated for accuracy from each document's
sparse window (`DeepAveragingNetwork.window_average`: sum of count x
embedding over the document's distinct words in a fixed order), not from a
dense (B, 10,000) x (10,000, 50) product whose summation XLA/Eigen may split
differently by thread count. Two runs of the same config on the same machine
give the same metrics.json except the wall times (``seconds_per_example``);
the slow test checks it on the quick config. Across machines the numbers may
still differ in the last bits and then beyond (training amplifies them): the
CPU's instruction set (FMA, vector width) changes float rounding in every
dense layer, and A's training, the attribution methods and the deletion
curves use F on dense count vectors (they need gradients with respect to
every count).

Measured (default; the shared 2-core CPU at load ~20, 2026-11-23):
  python train.py --config configs/newsgroups.py --workdir /tmp/news_default
      --config.data.data_dir=/tmp/tfds_news
  took 33 min 46 s end to end (F ~9 min, A 1,500 steps ~22 min at 1.2
  steps/s, evaluation ~2.5 min; alone on the machine about a third of
  that). F test accuracy 0.789 (11,314 train / 7,531 test documents).
  Deletion AUC of F's predicted-class probability over 300 test documents'
  words (mean [95% CI]; lower is better): LAN 0.597 [0.562, 0.634], random
  0.648 [0.618, 0.675], gradient 0.536, gradient x input 0.104 [0.086,
  0.122], integrated gradients 0.104, SmoothGrad 0.156, per-example eq. 3
  with this noise 0.119 [0.108, 0.130]; the LAN's input-specific part
  (1 - A(x) minus its test-set mean, row lan_specific) 0.538 [0.507,
  0.566]. Re-running evaluate.py on the run reproduced every AUC to the
  printed digits. A at beta 50 corrupts most of the
  document (mean A 0.93, fidelity loss 4.5 nats at the end): a better beta
  for this noise is ~2 (A 500 steps on the same F, 200 documents: LAN
  0.574 [0.537, 0.614] vs random 0.667, gradient x input 0.108; fidelity
  loss 0.29; --config.lan.beta=2 --config.lan.num_steps=500). The amortized
  A stays far from gradient x input: its importance on a document's words
  is mostly a per-word prior (Spearman 0.65 at beta 50, 0.94 at beta 2,
  with the word's mean importance over the test set), while the same
  objective optimised per document ranks as well as the gradient methods.
  Claims (`newsgroups.claims`): F accuracy > 70% holds (0.789 [0.779,
  0.798]); LAN beats random by > 0.05 fails (0.050 [0.014, 0.083]); LAN
  within 0.02 of gradient x input fails (-0.494 [-0.529, -0.461]); top-15
  words class-associated > 5 points above vocabulary fails (0.005).

Variants (``--config configs/newsgroups.py:VARIANT``):
  (none)    the default above.
  constant  the paper's noise (constant 0), otherwise the default: the
            "before" of issue 10.
  paper     the paper's noise, schedule and learning rates (F: 1,000,000
            steps at 5e-5, no word dropout; A: 100,000 steps of batch 32):
            days on a CPU.
  quick     a smoke run in well under a minute on a tiny corpus (tests make a
            synthetic tarball and pass it as --config.data.manual_dir).

Command:
  python train.py --config configs/newsgroups.py --workdir runs/newsgroups
  python evaluate.py --config configs/newsgroups.py --workdir runs/newsgroups
"""

from lanjax import config as config_lib


def get_config(arg=None):
  """The 20 Newsgroups config; ``arg`` in {None, 'constant', 'paper', 'quick'}."""
  config = config_lib.base_config(
      'newsgroups', dataset='twenty_newsgroups',
      manual_dir=config_lib.shared_data_dir('20news'))
  config.log_every = 1_000
  config.checkpoint_every = 5_000

  config.data.vocab_size = 10_000  # UNK included
  config.data.min_count = 2  # rarer training words are UNK

  config.f.embed_dim = 50
  config.f.hidden = (200, 150)
  config.f.dropout_rate = 0.5
  config.f.word_dropout_rate = 0.3
  config.f.learning_rate = 1e-3
  config.f.batch_size = 32
  config.f.num_steps = 12_000
  config.f.eval_every = 2_000

  config.lan.hidden = (100, 1000)
  config.lan.learning_rate = 1e-3
  config.lan.beta = 50.0
  # Bootstrapped training documents at the document's length
  # (`newsgroups.DocumentNoise`); 'constant' with value 0 is the paper's.
  config.lan.noise = 'bootstrap'
  config.lan.noise_value = 0.0
  config.lan.num_samples = 1
  config.lan.input = 'counts'  # or 'shares' (`newsgroups.ShareInputLAN`)
  config.lan.batch_size = 128
  config.lan.num_steps = 1_500
  # F is one large matrix product over the vocabulary: on CPU it runs larger
  # tiles of corrupted documents faster (K = 8: 928 vs 760 examples/s with
  # one noise sample at a time; benchmarks/results.md).
  config.lan.cpu_max_inputs = 1024

  config.eval.top_k = 15
  config.eval.chunk = 128  # documents made dense at once
  # The attribution comparison on the document's words (`compare_words`).
  config.eval.compare_examples = 300
  config.eval.compare_batch = 50
  config.eval.curve_steps = 20
  config.eval.method_settings.mask_optimisation.num_steps = 100
  config.eval.method_settings.mask_optimisation.num_samples = 1
  config.eval.association_ratio = 3.0
  config.eval.association_min_docs = 5
  config.eval.table_min_words = 20  # distinct words of a table's document
  config.eval.table_max_words = 60

  if arg in ('paper', 'constant'):  # the paper's H: counts scaled toward 0
    config.lan.noise = 'constant'
  if arg == 'paper':
    config.f.learning_rate = 5e-5
    config.f.num_steps = 1_000_000
    config.f.eval_every = 50_000
    config.lan.batch_size = 32
    config.lan.num_steps = 100_000
    config.f.word_dropout_rate = 0.0
    config.checkpoint_every = 10_000
  elif arg == 'quick':
    config_lib.quick_eval(config)
    config.data.vocab_size = 300
    config.data.min_count = 1
    config.f.num_steps = 150
    config.f.eval_every = 50
    config.lan.num_steps = 60
    config.lan.batch_size = 32
    config.log_every = 50
    config.checkpoint_every = 100
    config.eval.chunk = 16
    config.eval.association_min_docs = 1
    config.eval.table_min_words = 3
  elif arg == 'gpu':
    config_lib.gpu_variant(config)
  elif arg and arg != 'constant':
    raise ValueError(
        f'Unknown variant {arg!r}; expected constant, paper, quick or gpu.')
  return config
