"""20 Newsgroups (Grimm et al., section 5.3, Tables 1-2, appendix C).

A bag-of-words classifier F (a Deep Averaging Network) is trained on the
20 Newsgroups "bydate" split (from the sparse word windows, a fixed summation
order), then the LAN A on the frozen F. Evaluation writes, in the work dir:

* ``tables.md`` and ``tables.png``: Tables 1-2 of the paper (documents of
  comp.sys.mac.hardware and soc.religion.christian) and one such row for
  every class: the document's words and the 15 words of highest importance
  ``1 - A(x)`` over the whole vocabulary, words present in the document
  highlighted;
* ``comparison.md``, ``deletion_curve.png`` and ``metrics.json``
  (``comparison``): every attribution method of `lanjax.attribution` ranking
  each test document's distinct words, scored by deleting them in that order
  (and inserting them into the empty document), with 95% bootstrap intervals
  and the time per explanation (`compare_words`); ``diagnostics``: why the
  LAN ranks words as it does (`mask_diagnostics`); ``claims`` with effect
  sizes and intervals (`claims`).

Why the paper's noise ranks words weakly. With constant noise 0 the
corruption only rescales counts, ``x~ = (1 - A(x)) x``, and F averages, so
``F(c x) = F(x)``: a mask that is uniform over the document's words costs no
fidelity at all (measured: excess L_F 0.000 for a uniform mask with A's mean,
against 1.39 nats for A's own mask), and eq. 3 is minimised by pushing A
uniformly toward 1. The objective's optimum carries no ranking; what ranks
the words is the path of training, mostly a per-word prior (Spearman 0.77
with the word's mean importance over all documents, -0.04 with gradient x
input). Even the per-example optimisation of the same objective barely beats
a random order (deletion AUC 0.61 vs 0.66; gradient x input 0.12).

The fix within eq. 3: ``config.lan.noise = 'bootstrap'`` (`DocumentNoise`),
training documents rescaled to the explained document's length. A
corrupted word is then replaced by another document's words instead of
shrinking with all the others, so a uniform mask mixes in a foreign
document and costs fidelity. With it, the per-example optimisation of eq. 3
reaches gradient x input (deletion AUC 0.123 vs 0.115); see
``configs/newsgroups.py`` for the amortized A's numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lanjax import attribution
from lanjax import corruption
from lanjax import evaluation
from lanjax import io
from lanjax import metrics as metrics_lib
from lanjax import noise as noise_lib
from lanjax.experiments import skeleton
from lanjax.data import newsgroups as ng
from lanjax.data import tfds_data
from lanjax.models import DeepAveragingNetwork, LatentAttentionNetwork

PAPER_NUM_DOCS = {'train': 11_293, 'test': 7_528}
TABLE_CLASSES = ('comp.sys.mac.hardware', 'soc.religion.christian')


# ----------------------------------------------------------------------------
# Data.


def load_corpus(config) -> dict:
  """The preprocessed corpus: ``{split: {'docs', 'labels', 'ids', 'subjects'}}``.

  ``docs`` are lists of words (stop-word-free, see `lanjax.data.newsgroups`),
  sorted by document id so the order does not depend on TFDS's shuffling.
  """
  d = config.data
  out = {}
  for split, limit in (('train', d.train_limit or None),
                       ('test', d.test_limit or None)):
    arrays = tfds_data.load_arrays(
        d.name, split, ('words', 'label', 'id', 'subject'),
        data_dir=d.data_dir or None, manual_dir=d.manual_dir or None,
        download=d.download, limit=limit, raw_name='20news')
    order = np.argsort(arrays['id'], kind='stable')
    out[split] = {
        'docs': [arrays['words'][i].split() for i in order],
        'labels': arrays['label'][order].astype(np.int32),
        'ids': [arrays['id'][i] for i in order],
        'subjects': [arrays['subject'][i] for i in order],
    }
  return out


def prepare(config, corpus) -> dict:
  """Vocabulary (from the training split) and bags of words of both splits."""
  vocab = ng.build_vocabulary(corpus['train']['docs'],
                              size=config.data.vocab_size,
                              min_count=config.data.min_count)
  bows = {split: jax.tree.map(jnp.asarray, ng.bag_of_words(c['docs'], vocab))
          for split, c in corpus.items()}
  return {'vocab': vocab, 'bow': bows,
          'labels': {s: c['labels'] for s, c in corpus.items()}}


def _vocab_stats(corpus, vocab) -> dict:
  known = set(vocab)
  tokens = [w for doc in corpus['train']['docs'] for w in doc]
  in_vocab = sum(w in known for w in tokens)
  distinct = len(set(tokens))
  return {'vocab_size': len(vocab), 'distinct_train_words': distinct,
          'train_token_coverage': in_vocab / max(len(tokens), 1)}


# ----------------------------------------------------------------------------
# Networks.


def make_f(config, vocab_size: int) -> DeepAveragingNetwork:
  f = config.f
  return DeepAveragingNetwork(vocab_size, num_classes=len(ng.GROUPS),
                              embed_dim=f.embed_dim, hidden=tuple(f.hidden),
                              dropout_rate=f.dropout_rate,
                              word_dropout_rate=f.word_dropout_rate,
                              rngs=nnx.Rngs(config.seed))


class ShareInputLAN(nnx.Module):
  """The LAN A reading a document's word shares instead of its raw counts.

  ``A(x) = LAN(x n / sum(x))`` with ``n`` the number of distinct words of
  the document: the counts rescaled so that a present word is 1 on average.
  The DAN reads only the proportions, so A sees what F sees, at one scale
  for short and long documents alike.
  """

  def __init__(self, vocab_size: int, hidden, *, rngs: nnx.Rngs):
    self.lan = LatentAttentionNetwork((vocab_size,), tuple(hidden), rngs=rngs)

  def __call__(self, x):
    total = x.sum(-1, keepdims=True)
    n = (x > 0).sum(-1, keepdims=True)
    return self.lan(x * n / jnp.where(total > 0, total, 1.0))


def make_lan(config, vocab_size: int):
  """A: FC(100), FC(1000), FC(V, sigmoid); on the counts (the paper) or, with
  ``config.lan.input == 'shares'``, on the word shares (`ShareInputLAN`)."""
  kind = config.lan.get('input', 'counts')
  if kind == 'counts':
    return skeleton.make_lan(config.lan, (vocab_size,), seed=config.seed + 1)
  if kind == 'shares':
    return ShareInputLAN(vocab_size, config.lan.hidden,
                         rngs=nnx.Rngs(config.seed + 1))
  raise ValueError(f"config.lan.input must be 'counts' (the paper) or "
                   f"'shares', got {kind!r}.")


def _sample_docs(key, bow, labels, batch_size):
  idx = jax.random.randint(key, (batch_size,), 0, bow.num_docs)
  return ng.dense_batch(bow, idx), labels[idx]


def window_batch(bow, idx) -> dict:
  """The sparse windows of documents ``idx``: ``{'ids', 'counts'}``, (B, L).

  What `DeepAveragingNetwork` averages in a fixed order (padding entries
  have count 0); the dense count vectors are never built.
  """
  ids, valid = _doc_window(bow, idx)
  pos = bow.offsets[idx][:, None] + jnp.arange(bow.max_length)[None, :]
  return {'ids': ids, 'counts': jnp.where(valid, bow.counts[pos], 0.0)}


def map_windows(fn, bow, *, chunk: int):
  """``fn(window (c, L), idx (c,))`` on all documents, ``c`` at a time."""
  n = bow.num_docs
  m = -(-n // chunk) * chunk
  idx = jnp.minimum(jnp.arange(m), n - 1).reshape(-1, chunk)
  out = jax.lax.map(lambda i: fn(window_batch(bow, i), i), idx)
  return jax.tree.map(lambda a: a.reshape((m,) + a.shape[2:])[:n], out)


def mean_over_docs(fn, bow, *, chunk: int):
  """The mean over all documents of ``fn(x (c, V)) -> (c, ...)``."""
  n = bow.num_docs
  m = -(-n // chunk) * chunk
  idx = jnp.arange(m).reshape(-1, chunk)

  def add(total, i):
    weight = (i < n).astype(jnp.float32)  # the padding repeats a document
    out = fn(ng.dense_batch(bow, jnp.minimum(i, n - 1)))
    return total + jnp.tensordot(weight, out, 1), None

  shape = jax.eval_shape(fn, jax.ShapeDtypeStruct((chunk, bow.vocab_size),
                                                  jnp.float32))
  total, _ = jax.lax.scan(add, jnp.zeros(shape.shape[1:], shape.dtype), idx)
  return total / n


def map_docs(fn, bow, *, chunk: int, extra=None):
  """Applies ``fn(x (c, V), idx (c,), extra)`` to all documents, ``c`` at a time.

  Returns ``fn``'s outputs for the ``N`` documents, concatenated: ``(N, ...)``.
  Runs as one `jax.lax.map`, so only ``c`` dense count vectors exist at once.
  """
  n = bow.num_docs
  m = -(-n // chunk) * chunk
  idx = jnp.minimum(jnp.arange(m), n - 1).reshape(-1, chunk)
  out = jax.lax.map(lambda i: fn(ng.dense_batch(bow, i), i, extra), idx)
  return jax.tree.map(lambda a: a.reshape((m,) + a.shape[2:])[:n], out)


# ----------------------------------------------------------------------------
# Data loaded once, and the task.


def load_data(config) -> dict:
  """The corpus, its vocabulary and bags of words (`prepare`), loaded once."""
  corpus = load_corpus(config)
  return {**prepare(config, corpus), 'corpus': corpus}


def describe(config, data) -> str:
  del config
  bow, vocab = data['bow'], data['vocab']
  return (f'20 Newsgroups: {bow["train"].num_docs} train / '
          f'{bow["test"].num_docs} test documents (paper: '
          f'{PAPER_NUM_DOCS["train"]} / {PAPER_NUM_DOCS["test"]}), vocabulary '
          f'{len(vocab)} words incl. {ng.UNK}')


def make_task(config, data) -> skeleton.Task:
  """The DAN F on the documents and the LAN A on the frozen F."""
  vocab, bow, labels = data['vocab'], data['bow'], data['labels']
  test_bow = bow['test']
  test_labels = jnp.asarray(labels['test'])

  def f_batch(d, key):  # F reads the sparse windows (fixed summation order)
    idx = jax.random.randint(key, (config.f.batch_size,), 0,
                             d['bow'].num_docs)
    return {'x': window_batch(d['bow'], idx), 'y': d['labels'][idx]}

  def lan_batch(d, key):
    return _sample_docs(key, d['bow'], d['labels'], config.lan.batch_size)[0]

  def f_eval(f):
    pred = map_windows(lambda w, i: jnp.argmax(f(w), -1), test_bow,
                       chunk=config.eval.chunk)
    return {'accuracy': (pred == test_labels).mean()}

  return skeleton.Task(
      name='', make_f=lambda: make_f(config, len(vocab)),
      make_lan=lambda: make_lan(config, len(vocab)),
      train_data={'bow': bow['train'], 'labels': jnp.asarray(labels['train'])},
      f_batch=f_batch, lan_batch=lan_batch,
      noise=make_noise(config, bow['train']),
      keys=tuple(jax.random.split(jax.random.key(config.seed), 3)),
      f_forward=lambda model, x, key: model(x, dropout_key=key),
      f_eval=f_eval)


def tasks(config, data) -> list[skeleton.Task]:
  return [make_task(config, data)]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DocumentNoise:
  r"""Bootstrapped noise for bags of words: training documents at x's length.

  Each noise sample is a training document drawn uniformly (with
  replacement), its counts rescaled to the explained document's number of
  words: :math:`\eta = d \, \sum_i x_i / \sum_i d_i`. The corruption
  ``x~ = A eta + (1 - A) x`` then keeps the document's length in
  expectation, and since the DAN averages, a uniform mask ``a`` mixes the
  document with another one in the proportion ``a`` instead of rescaling
  it: unlike noise 0, corrupting everything is no longer free.

  Attributes:
    bow: the training `BagOfWords` (a pytree; its arrays are device buffers
      when it is passed to a jitted step).
  """
  bow: ng.BagOfWords

  def sample(self, key, x, num_samples: int):
    """``(K, B, V)`` rescaled training documents for ``x`` of shape (B, V)."""
    b = x.shape[0]
    idx = jax.random.randint(key, (num_samples * b,), 0, self.bow.num_docs)
    docs = ng.dense_batch(self.bow, idx).reshape(num_samples, b, -1)
    total = docs.sum(-1, keepdims=True)
    length = x.sum(-1)[None, :, None]
    return docs * (length / jnp.where(total > 0, total, 1.0))


def make_noise(config, train_bow=None):
  """H: ``'constant'`` (the paper: counts scaled toward ``noise_value``) or
  ``'bootstrap'`` (`DocumentNoise` over the training documents)."""
  if config.lan.noise == 'constant':
    return noise_lib.make_noise('constant', value=config.lan.noise_value)
  if config.lan.noise == 'bootstrap':
    if train_bow is None:
      raise ValueError('config.lan.noise=\'bootstrap\' draws training '
                       'documents; pass train_bow (the training BagOfWords).')
    return DocumentNoise(train_bow)
  raise ValueError(
      f'config.lan.noise must be \'constant\' (the paper: a corrupted count '
      f'is scaled toward config.lan.noise_value) or \'bootstrap\' (training '
      f'documents at the document\'s length), got {config.lan.noise!r}.')


# ----------------------------------------------------------------------------
# Evaluation.


def class_association(bow, labels, num_classes: int):
  r"""How much more often each word occurs in a class's training documents.

  .. math:: r(w, c) = \frac{P(w \in d \mid c)}{P(w \in d)}

  with both probabilities estimated as shares of training documents that
  contain ``w`` (of class ``c``, resp. of any class).

  Args:
    bow: the training `BagOfWords` (NumPy).
    labels: ``(N,)`` classes.
    num_classes: ``C``.

  Returns:
    ``(ratio (C, V), doc_freq (C, V))``: ``r`` (0 where ``w`` never occurs)
    and the number of class-``c`` documents containing ``w``.
  """
  ids = np.asarray(bow.ids)
  lengths = np.asarray(bow.lengths)
  doc_of_entry = np.repeat(np.arange(len(lengths)), lengths)
  entry_class = np.asarray(labels)[doc_of_entry]
  df = np.zeros((num_classes, bow.vocab_size), np.float64)
  np.add.at(df, (entry_class, ids[:len(doc_of_entry)]), 1.0)
  n_c = np.bincount(labels, minlength=num_classes).astype(np.float64)
  p_wc = df / np.maximum(n_c, 1)[:, None]
  p_w = df.sum(0) / max(len(labels), 1)
  ratio = np.where(p_w > 0, p_wc / np.where(p_w > 0, p_w, 1), 0.0)
  return ratio, df


def _doc_window(bow, idx):
  """The distinct word ids of documents ``idx``: ``(ids, valid)``, (B, L)."""
  window = jnp.arange(bow.max_length)
  pos = bow.offsets[idx][:, None] + window[None, :]
  return bow.ids[pos], window[None, :] < bow.lengths[idx][:, None]


def _order(scores, ids, valid):
  """Document word ids by decreasing score, ``-1`` for padding: (B, L)."""
  s = jnp.where(valid, scores, -jnp.inf)
  perm = jnp.argsort(-s, axis=-1, stable=True)
  return jnp.where(jnp.take_along_axis(valid, perm, -1),
                   jnp.take_along_axis(ids, perm, -1), -1)


def evaluate_task(config, data, task, trained, workdir) -> dict:
  """Tables 1-2, deletion curves and the metrics of a trained F and A."""
  corpus = data['corpus']
  vocab, bow, labels = data['vocab'], data['bow'], data['labels']
  io.write_text(os.path.join(workdir, 'vocab.txt'), '\n'.join(vocab) + '\n')
  v = len(vocab)
  k = config.eval.top_k
  f, a = trained.f, trained.a

  ratio, df = class_association(bow['train'], labels['train'], len(ng.GROUPS))
  strong = (ratio >= config.eval.association_ratio) & (
      df >= config.eval.association_min_docs)
  test_bow, test_labels = bow['test'], jnp.asarray(labels['test'])

  @jax.jit
  def mean_importance():
    return mean_over_docs(lambda x: metrics_lib.importance(a(x)), test_bow,
                          chunk=config.eval.chunk)

  mean_imp = mean_importance()

  @jax.jit
  def doc_stats(strong):
    def fn(x, idx, strong):
      logits = f(x)
      mask = a(x)
      imp = metrics_lib.importance(mask)
      top_imp, top = jax.lax.top_k(imp, k)
      _, top_specific = jax.lax.top_k(imp - mean_imp, k)
      present = x > 0
      y = test_labels[idx]
      strong_y = strong[y]  # (c, V)
      n_present = present.sum(-1)
      return {
          'pred': jnp.argmax(logits, -1),
          'prob': jax.nn.softmax(logits, -1).max(-1),
          'top': top, 'top_importance': top_imp,
          'top_in_doc': jnp.take_along_axis(present, top, -1),
          'top_assoc': jnp.take_along_axis(strong_y, top, -1),
          'top_specific': top_specific,
          'top_specific_in_doc': jnp.take_along_axis(present, top_specific,
                                                     -1),
          'top_specific_assoc': jnp.take_along_axis(strong_y, top_specific,
                                                    -1),
          'doc_assoc_share': (present & strong_y).sum(-1) / jnp.maximum(
              n_present, 1),
          'vocab_assoc_share': strong_y.mean(-1),
          'n_present': n_present,
          'mask_mean': mask.mean(-1),
          'mask_mean_doc': (mask * present).sum(-1) / jnp.maximum(n_present, 1),
      }
    return map_docs(fn, test_bow, chunk=config.eval.chunk, extra=strong)

  stats = jax.device_get(doc_stats(jnp.asarray(strong)))
  correct = stats['pred'] == labels['test']

  # Every attribution method ranks each document's distinct words; F's
  # probability of its prediction as they are deleted (or inserted).
  n_cmp = min(config.eval.compare_examples, test_bow.num_docs)
  cmp_bow = _subset(test_bow, n_cmp)
  table, per_doc = compare_words(config, task, trained, cmp_bow,
                                 workdir=workdir, mean_importance=mean_imp)
  diag = mask_diagnostics(config, task, trained, cmp_bow,
                          mean_importance=mean_imp)
  top_words = [[vocab[i] for i in row] for row in stats['top']]
  counted = collections_counter(top_words)
  n_docs = len(top_words)
  most_common = counted.most_common(k)
  m = {
      'num_documents': {s: int(b.num_docs) for s, b in bow.items()},
      'paper_num_documents': PAPER_NUM_DOCS,
      **_vocab_stats(corpus, vocab),
      'f_test_accuracy': float(correct.mean()),
      'top_k': k,
      'topk_in_document_share': float(stats['top_in_doc'].mean()),
      'topk_in_document_share_random_words': float(
          (stats['n_present'] / v).mean()),
      'topk_class_associated_share': float(stats['top_assoc'].mean()),
      'class_associated_share_random_vocab_words': float(
          stats['vocab_assoc_share'].mean()),
      'class_associated_share_document_words': float(
          stats['doc_assoc_share'].mean()),
      'specific_topk_in_document_share': float(
          stats['top_specific_in_doc'].mean()),
      'specific_topk_class_associated_share': float(
          stats['top_specific_assoc'].mean()),
      'topk_distinct_words_over_test_docs': len(counted),
      'topk_most_common_words': [[w, c / n_docs] for w, c in most_common],
      'mask_mean': float(stats['mask_mean'].mean()),
      'mask_mean_on_document_words': float(stats['mask_mean_doc'].mean()),
      'comparison': table,
      'deletion': {
          'num_docs': int(n_cmp), 'num_steps': int(table['num_steps']),
          **{f'auc_{name}_order': row['deletion_auc/words']['mean']
             for name, row in table['methods'].items()},
      },
      'diagnostics': diag,
      'beta': float(config.lan.beta),
      'noise': config.lan.noise,
      'definitions': {
          'importance': '1 - A(x), per vocabulary word',
          'top_k': f'the {k} vocabulary words of highest importance (over '
                   'the whole vocabulary, as in the paper\'s tables)',
          'topk_in_document_share': 'mean over test documents of the share '
                                    'of the top-k words that occur in the '
                                    'document',
          'topk_in_document_share_random_words': 'the same for k words drawn '
                                                 'uniformly from the '
                                                 'vocabulary (expected value)',
          'class_association': 'r(w, c) = P(w in d | class c) / P(w in d): '
                               'share of class-c training documents that '
                               'contain w over the share of all training '
                               'documents that contain w',
          'strongly_associated': f'r(w, c) >= '
                                 f'{config.eval.association_ratio} and w '
                                 f'occurs in >= '
                                 f'{config.eval.association_min_docs} '
                                 'training documents of class c',
          'topk_class_associated_share': 'mean over test documents of the '
                                         'share of the top-k words strongly '
                                         'associated with the document\'s '
                                         'true class',
          'class_associated_share_random_vocab_words': 'the same share among '
                                                       'all vocabulary words',
          'class_associated_share_document_words': 'the same share among the '
                                                   'document\'s own words',
          'specific_topk': f'the {k} vocabulary words of highest '
                           'input-specific importance: 1 - A(x) minus its '
                           'mean over the test documents (the mask\'s static '
                           'part removed, as for the grid in translated '
                           'MNIST)',
          'comparison': 'every attribution method ranks each test '
                        'document\'s distinct words by its importance; '
                        'deletion: F\'s softmax probability of its clean '
                        'prediction while the words are zeroed in that '
                        'order; insertion: the same while they are put '
                        'back into an empty document; '
                        f'{table["num_steps"]} steps of equal fractions of '
                        'the words, AUC by the trapezoid rule (deletion: '
                        'lower is better; insertion: higher); mean and 95% '
                        'bootstrap interval over the documents; seconds per '
                        'explained document after compilation',
          'mask_mean': 'mean of A(x) over all vocabulary words (over the '
                       'document\'s words for mask_mean_on_document_words)',
      },
  }
  m['claims'] = claims(config, m, stats, correct, per_doc)

  # Tables 1-2 and one row per class.
  rows = _table_rows(config, corpus, vocab, stats, correct)
  m['table_documents'] = [r['id'] for r in rows]
  io.write_text(os.path.join(workdir, 'tables.md'),
                _tables_markdown(rows, k))
  from lanjax.experiments import figures  # pylint: disable=g-import-not-at-top
  paper_rows = [r for r in rows if r['group'] in TABLE_CLASSES]
  figures.word_tables(
      paper_rows, os.path.join(workdir, 'tables.png'),
      title=f'Tables 1-2: document words and the {k} most important words '
            '(1 - A(x)); yellow: in the document and in the top words')
  figures.word_tables(
      rows, os.path.join(workdir, 'tables_all_classes.png'),
      title=f'One test document per class: its words and the {k} most '
            'important words; yellow: in both', max_doc_words=60)
  figures.perturbation_curves(
      table, os.path.join(workdir, 'deletion_curve.png'),
      title=f'{n_cmp} test documents: F\'s probability of its prediction as '
            'each method\'s most important words\nare deleted (left) or '
            f'inserted (right); LAN noise {config.lan.noise}, beta '
            f'{config.lan.beta:g}')

  dl = m['deletion']
  print(f'F test accuracy {m["f_test_accuracy"]:.4f}; top-{k} words in the '
        f'document {m["topk_in_document_share"]:.3f} (random words '
        f'{m["topk_in_document_share_random_words"]:.3f}); class-associated '
        f'{m["topk_class_associated_share"]:.3f} (vocabulary '
        f'{m["class_associated_share_random_vocab_words"]:.3f}); deletion '
        'AUC ' + ', '.join(f'{name[4:-6]} {v:.3f}' for name, v in dl.items()
                           if name.startswith('auc_')), flush=True)
  print(evaluation.markdown_table(table), flush=True)
  return m


# ----------------------------------------------------------------------------
# The attribution comparison on the document's words.

# Methods of `lanjax.attribution` that rank nothing meaningful on a bag of
# words, and why (they are left out of the comparison).
LEFT_OUT = {
    'occlusion': 'its windows slide over vocabulary ids, which have no '
                 'neighbourhood; a window of one id is leave-one-word-out, '
                 'V = 10,000 evaluations of F per document',
    'rise': 'its random masks are smooth on a spatial grid; vocabulary ids '
            'have no spatial layout',
}


def word_curves(f, x, order, *, num_steps: int):
  """Deletion and insertion curves of F's prediction over document words.

  Deletion zeroes the document's distinct words in ``order`` (most important
  first, `lanjax.metrics.deletion_curve`); insertion starts from the empty
  document (F's prediction on the clean document still tracked) and puts
  the words back in the same order.

  Args:
    f: the black box ``(B, V) -> logits``.
    x: ``(B, V)`` count vectors.
    order: ``(B, L)`` word ids, most important first, ``-1`` padding.
    num_steps: steps of equal fractions of each document's words.

  Returns:
    ``{'deletion': (curve (S + 1, B), auc (B,)), 'insertion': (...)}``.
  """
  deletion = metrics_lib.deletion_curve(f, x, order, num_steps=num_steps)
  valid = order >= 0
  rank = jnp.cumsum(valid, axis=-1) - 1
  never = jnp.iinfo(jnp.int32).max
  component_rank = jnp.full(x.shape, never, jnp.int32).at[
      jnp.arange(x.shape[0])[:, None], jnp.where(valid, order, 0)].min(
          jnp.where(valid, rank, never))
  classes = jnp.argmax(f(x), -1)
  score = lambda out: jnp.take_along_axis(jax.nn.softmax(out, -1),
                                          classes[:, None], -1)[:, 0]
  # Insertion: every component not yet inserted is 0 (words outside the
  # document are 0 either way).
  insertion = metrics_lib._ranked_curve(  # pylint: disable=protected-access
      f, x, component_rank, valid.sum(-1), jnp.zeros_like(x),
      num_steps=num_steps, insertion=True, score=score)
  return {'deletion': deletion, 'insertion': insertion}


def compare_words(config, task, trained, bow, *, workdir: str,
                  mean_importance=None):
  """Every method of ``config.eval.methods`` ranking each document's words.

  The methods (`skeleton.explainers`, by name from `lanjax.attribution`; the
  LAN is ``1 - A(x)``) explain F's log-probability of its clean prediction
  on the documents of ``bow``; each document's distinct words are ordered
  by the method's importance and scored with `word_curves`. Methods in
  `LEFT_OUT` are skipped (with the reason in the table). Writes
  ``comparison.md``.

  Returns:
    ``(table, per_doc)``: the table in `lanjax.evaluation.compare`'s layout
    (``'methods'``: ``{name: {'deletion_auc/words', 'insertion_auc/words',
    'seconds_per_example': {'mean', 'low', 'high'}}}``, ``'curves'``,
    ``'left_out'``), and ``{name: {'deletion': (N,), 'insertion': (N,),
    'scores': (N, L) importance of the window entries}}`` in NumPy.
  """
  cfg = copy.deepcopy(config)
  cfg.eval.methods = tuple(m for m in config.eval.methods
                           if m not in LEFT_OUT)
  explainers = skeleton.explainers(cfg, task, trained)
  if mean_importance is not None and 'lan' in explainers:
    explainers['lan_specific'] = attribution.explainer(
        'lan', mask_fn=lambda x: trained.a(x) + mean_importance)
  steps = config.eval.curve_steps
  size = config.eval.compare_batch or bow.num_docs
  key = jax.random.fold_in(task.keys[2], 7)
  f_apply, params = trained.f_apply, trained.f_params
  batches = [jnp.arange(i, min(i + size, bow.num_docs))
             for i in range(0, bow.num_docs, size)]

  def run(explain, params, idx, key):
    x = ng.dense_batch(bow, idx)
    f = lambda z: f_apply(params, z)
    imp = explain(f, x, key).reshape(x.shape)
    ids, valid = _doc_window(bow, idx)
    scores = jnp.take_along_axis(imp, ids, -1)
    out = word_curves(f, x, _order(scores, ids, valid), num_steps=steps)
    return scores, out

  methods, curves, per_doc = {}, {}, {}
  ci = lambda v: dict(zip(('mean', 'low', 'high'), metrics_lib.bootstrap_ci(
      np.asarray(v), num=config.eval.num_bootstrap)))
  for name, explain in explainers.items():
    fn = jax.jit(functools.partial(run, explain))
    outs = [fn(params, idx, jax.random.fold_in(key, i))
            for i, idx in enumerate(batches)]
    res = {mode: (np.concatenate([np.asarray(o[1][mode][0]) for o in outs],
                                 1),
                  np.concatenate([np.asarray(o[1][mode][1]) for o in outs]))
           for mode in ('deletion', 'insertion')}
    # Time per explanation: the method alone, compiled, on the first batch.
    x0 = ng.dense_batch(bow, batches[0])
    expl = jax.jit(lambda p, x, k, explain=explain: explain(
        lambda z: f_apply(p, z), x, k))
    seconds = evaluation.time_per_example(expl, params, x0,
                                          jax.random.fold_in(key, 99))
    methods[name] = {'deletion_auc/words': ci(res['deletion'][1]),
                     'insertion_auc/words': ci(res['insertion'][1]),
                     'seconds_per_example': ci(seconds)}
    curves[name] = {f'{mode}/words': res[mode][0].mean(1).tolist()
                    for mode in ('deletion', 'insertion')}
    per_doc[name] = {'deletion': res['deletion'][1],
                     'insertion': res['insertion'][1],
                     'scores': np.concatenate([np.asarray(o[0])
                                               for o in outs])}
  table = {
      'num_examples': int(bow.num_docs), 'num_steps': int(steps),
      'level': 0.95,
      'metrics': ['deletion_auc/words', 'insertion_auc/words',
                  'seconds_per_example'],
      'methods': methods, 'curves': curves,
      'left_out': {m: LEFT_OUT[m] for m in config.eval.methods
                   if m in LEFT_OUT},
  }
  lines = [
      f'# 20 Newsgroups: attribution methods on {bow.num_docs} test '
      'documents', '',
      'Each method ranks the document\'s distinct words. deletion_auc/words: '
      'F\'s probability of its clean prediction while the words are zeroed '
      'in that order (lower is better); insertion_auc/words: while they are '
      'put back into the empty document (higher is better); '
      'seconds_per_example: one explanation after compilation. Mean [95% '
      f'bootstrap interval]. LAN: noise {config.lan.noise}, beta '
      f'{config.lan.beta:g}, {trained.lan_step} steps.', '',
      evaluation.markdown_table(table), '']
  lines += [f'Left out: {m} ({why}).' for m, why in table['left_out'].items()]
  io.write_text(os.path.join(workdir, 'comparison.md'),
                '\n'.join(lines) + '\n')
  return table, per_doc


def _spearman_rows(a, b, valid):
  """Per-row Spearman correlation of ``a`` and ``b`` over ``valid`` entries."""
  out = []
  for ra, rb, v in zip(a, b, valid):
    ra, rb = ra[v], rb[v]
    if ra.size < 3:
      continue
    ranks = lambda z: np.argsort(np.argsort(z, kind='stable'), kind='stable')
    ca, cb = ranks(ra) - (ra.size - 1) / 2, ranks(rb) - (rb.size - 1) / 2
    den = np.sqrt((ca ** 2).sum() * (cb ** 2).sum())
    out.append(float((ca * cb).sum() / den) if den > 0 else 0.0)
  return np.asarray(out)


def mask_diagnostics(config, task, trained, bow, *, mean_importance) -> dict:
  """Why the LAN ranks words as it does: measurements on ``bow``'s documents.

  * ``fidelity_excess_lan`` / ``_uniform``: the mean excess L_F (over its
    value on the clean document) of A's mask and of a uniform mask with the
    same mean over the document's words (one noise sample each, the same
    key): under noise 0 the DAN's average makes the uniform mask free;
  * ``mask_mean_doc_words`` and ``importance_cv_doc_words``: A(x) on the
    document's words and the spread of ``1 - A(x)`` over them (std / mean);
  * ``static_rank_corr``: per document, the Spearman correlation over its
    words between ``1 - A(x)`` and the word's mean importance over all test
    documents (1: the ranking is the same for every document);
  * ``rank_corr_with_gradient_x_input``: per document, the Spearman
    correlation of the LAN's and gradient x input's word scores.

  Returns:
    ``{name: {'mean', 'low', 'high'}}``.
  """
  f, a = trained.f, trained.a
  size = config.eval.compare_batch or bow.num_docs
  key = jax.random.fold_in(task.keys[2], 11)

  @jax.jit
  def batch(idx, key):
    x = ng.dense_batch(bow, idx)
    ids, valid = _doc_window(bow, idx)
    mask = a(x)
    m_doc = jnp.take_along_axis(mask, ids, -1)
    n = valid.sum(-1)
    mean_doc = jnp.where(valid, m_doc, 0).sum(-1) / jnp.maximum(n, 1)
    present = x > 0
    uniform = jnp.where(present, mean_doc[:, None], mask)
    eta = task.noise.sample(key, x, 1)[0]
    ref = f(x)
    clean = task.output_loss(ref, ref)
    loss = lambda m: task.output_loss(f(corruption.corrupt(x, m, eta)), ref) - clean
    imp = metrics_lib.importance(m_doc)
    mu = jnp.where(valid, imp, 0).sum(-1) / jnp.maximum(n, 1)
    var = jnp.where(valid, (imp - mu[:, None]) ** 2, 0).sum(-1) / jnp.maximum(
        n, 1)
    pred = jnp.argmax(ref, -1)
    logp = lambda z: jnp.take_along_axis(jax.nn.log_softmax(f(z)),
                                         pred[:, None], -1).sum()
    gxi = jnp.take_along_axis(jax.grad(logp)(x) * x, ids, -1)
    return {'fidelity_excess_lan': loss(mask),
            'fidelity_excess_uniform': loss(uniform),
            'mask_mean_doc_words': mean_doc,
            'importance_cv_doc_words': jnp.sqrt(var) / jnp.maximum(mu, 1e-12),
            'imp': imp, 'static': mean_importance[ids], 'gxi': gxi,
            'valid': valid}

  outs = [jax.device_get(batch(jnp.arange(i, min(i + size, bow.num_docs)),
                               jax.random.fold_in(key, i)))
          for i in range(0, bow.num_docs, size)]
  cat = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
  values = {k: cat[k] for k in ('fidelity_excess_lan',
                                'fidelity_excess_uniform',
                                'mask_mean_doc_words',
                                'importance_cv_doc_words')}
  values['static_rank_corr'] = _spearman_rows(cat['imp'], cat['static'],
                                              cat['valid'])
  values['rank_corr_with_gradient_x_input'] = _spearman_rows(
      cat['imp'], cat['gxi'], cat['valid'])
  return {k: dict(zip(('mean', 'low', 'high'), metrics_lib.bootstrap_ci(
      v, num=config.eval.num_bootstrap))) for k, v in values.items()}


def claims(config, m, stats, correct, per_doc) -> dict:
  """The experiment's claims (`skeleton.claim`: effect size, 95% interval).

  Each holds only when the lower end of its bootstrap interval clears the
  stated margin, so an untrained or degenerate run makes them false. That
  the top-k words of ``1 - A(x)`` are mostly the document's own words is
  reported (``topk_in_document_share``) but claims nothing: under noise 0
  only the document's words get a fidelity gradient, so even an A trained
  for a few steps on an untrained F puts them first.
  """
  nb = config.eval.num_bootstrap
  n = len(per_doc['lan']['deletion']) if 'lan' in per_doc else 0
  out = {
      'f_accuracy_above_70_percent': skeleton.claim(
          correct.astype(np.float64), above=0.70, num_bootstrap=nb,
          statement='F classifies more than 70% of the test documents '
                    'correctly'),
      'topk_words_class_associated_more_than_vocabulary': skeleton.claim(
          stats['top_assoc'].mean(-1) - stats['vocab_assoc_share'],
          above=0.05, num_bootstrap=nb,
          statement='the top-k words are strongly associated with the '
                    'document\'s class at least 5 points more often than '
                    'vocabulary words'),
  }
  if n and 'random' in per_doc:
    out['lan_deletes_what_f_needs_sooner_than_random'] = skeleton.claim(
        per_doc['random']['deletion'] - per_doc['lan']['deletion'],
        above=0.05, num_bootstrap=nb,
        statement='deleting the document\'s words in LAN order lowers the '
                  'deletion AUC by more than 0.05 against a random order '
                  '(paired per document)')
  if n and 'gradient_x_input' in per_doc and 'random' in per_doc:
    # The target. On its own it would hold when every order is as
    # bad as every other (an untrained F), so it also requires the LAN to
    # beat the random order.
    c = skeleton.claim(
        per_doc['gradient_x_input']['deletion'] - per_doc['lan']['deletion'],
        above=-0.02, num_bootstrap=nb,
        statement='the LAN\'s deletion AUC is at most 0.02 above gradient x '
                  'input\'s (paired per document; the issue\'s target), and '
                  'the LAN beats the random order (the claim above)')
    c['holds'] = bool(
        c['holds'] and out['lan_deletes_what_f_needs_sooner_than_random'][
            'holds'])
    out['lan_no_worse_than_gradient_x_input'] = c
  return out


def collections_counter(lists):
  import collections  # pylint: disable=g-import-not-at-top
  return collections.Counter(w for row in lists for w in row)


def _subset(bow, n):
  """The first ``n`` documents of a `BagOfWords` (shares the flat arrays)."""
  return ng.BagOfWords(ids=bow.ids, counts=bow.counts,
                       offsets=bow.offsets[:n], lengths=bow.lengths[:n],
                       vocab_size=bow.vocab_size, max_length=bow.max_length)


def _table_rows(config, corpus, vocab, stats, correct) -> list[dict]:
  """One test document per class, those of Tables 1-2 first.

  Per class, the first document (by id) that F classifies correctly and whose
  number of distinct words lies in ``[table_min_words, table_max_words]``;
  failing that, the first correctly classified one, then the first one.
  """
  test = corpus['test']
  lo, hi = config.eval.table_min_words, config.eval.table_max_words
  known = set(vocab)
  order = list(TABLE_CLASSES) + [g for g in ng.GROUPS if g not in
                                 TABLE_CLASSES]
  rows = []
  for group in order:
    c = ng.GROUPS.index(group)
    cands = [i for i in range(len(test['docs'])) if test['labels'][i] == c]
    if not cands:
      continue
    n_words = lambda i: len(set(test['docs'][i]))
    pick = ([i for i in cands if correct[i] and lo <= n_words(i) <= hi]
            or [i for i in cands if correct[i]] or cands)[0]
    doc_words = list(dict.fromkeys(
        w if w in known else ng.UNK for w in test['docs'][pick]))
    top = [vocab[j] for j in stats['top'][pick]]
    specific = [vocab[j] for j in stats['top_specific'][pick]]
    rows.append({
        'group': group, 'id': test['ids'][pick],
        'subject': test['subjects'][pick],
        'predicted': ng.GROUPS[int(stats['pred'][pick])],
        'probability': float(stats['prob'][pick]),
        'doc_words': doc_words, 'top_words': top,
        'top_importance': [float(x) for x in stats['top_importance'][pick]],
        'in_doc': [w in set(doc_words) for w in top],
        'specific_words': specific,
    })
  return rows


def _tables_markdown(rows, k) -> str:
  """Tables 1-2 (one table each) and a table of the other classes."""
  header = ['| Document topic | Document words (unordered) | '
            f'{k} most important words | {k} most important, input-specific '
            '|', '|---|---|---|---|']

  def line(row):
    top = set(row['top_words'])
    words = set(row['doc_words'])
    doc = ', '.join(f'**{w}**' if w in top else w for w in row['doc_words'])
    imp = ', '.join(f'**{w}**' if inn else w
                    for w, inn in zip(row['top_words'], row['in_doc']))
    spec = ', '.join(f'**{w}**' if w in words else w
                     for w in row['specific_words'])
    return (f'| {row["group"]}<br>({row["id"]}; F: {row["predicted"]}, '
            f'p = {row["probability"]:.2f}) | {doc} | {imp} | {spec} |')

  lines = [
      '# 20 Newsgroups: what the LAN says the DAN attends to',
      '',
      f'Per test document: its distinct words (vocabulary words; rare words '
      f'as {ng.UNK}), in order of first occurrence, and the {k} words of '
      f'highest importance 1 - A(x) over the whole vocabulary, most '
      f'important first. **Bold**: words both in the document and among the '
      f'{k} (yellow in the paper). The last column ranks by input-specific '
      f'importance, 1 - A(x) minus its mean over the test documents, which '
      f'removes the part of the mask that is the same for every document.',
      '']
  paper = [r for r in rows if r['group'] in TABLE_CLASSES]
  others = [r for r in rows if r['group'] not in TABLE_CLASSES]
  for n, row in enumerate(paper):
    lines += [f'## Table {n + 1}: {row["group"]}', '', *header, line(row), '']
  if others:
    lines += ['## One document of every other class', '', *header,
              *map(line, others), '']
  return '\n'.join(lines)


def synthetic_data(config, num_train: int = PAPER_NUM_DOCS['train'],
                   num_test: int = 1_000) -> dict:
  """Random data of `load_data`'s layout (for benchmarks): documents of
  random distinct words (log-normal lengths, median 60, at most 2,000
  distinct words) with counts 1-4, over a vocabulary of
  ``config.data.vocab_size`` placeholder words, and random labels."""
  rng = np.random.default_rng(0)
  v = int(config.data.vocab_size)
  vocab = [ng.UNK] + [f'w{i}' for i in range(1, v)]
  bows, labels = {}, {}
  for split, n in (('train', num_train), ('test', num_test)):
    lengths = np.clip(rng.lognormal(np.log(60), 0.9, n), 1,
                      min(2_000, v)).astype(np.int32)
    ids = np.concatenate([np.sort(rng.choice(v, k, replace=False))
                          for k in lengths]).astype(np.int32)
    counts = rng.integers(1, 5, ids.size).astype(np.float32)
    max_length = int(lengths.max())
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
    bows[split] = jax.tree.map(jnp.asarray, ng.BagOfWords(
        ids=np.concatenate([ids, np.zeros(max_length, np.int32)]),
        counts=np.concatenate([counts, np.zeros(max_length, np.float32)]),
        offsets=offsets, lengths=lengths, vocab_size=v,
        max_length=max_length))
    labels[split] = rng.integers(0, len(ng.GROUPS), n).astype(np.int32)
  return {'vocab': vocab, 'bow': bows, 'labels': labels}


EXPERIMENT = skeleton.Experiment(
    name='newsgroups', load_data=load_data, tasks=tasks,
    evaluate=evaluate_task, describe=describe, synthetic_data=synthetic_data)
