"""20 Newsgroups (Grimm et al., section 5.3, Tables 1-2, appendix C).

A bag-of-words classifier F (a Deep Averaging Network) is trained on the
20 Newsgroups "bydate" split, then the LAN A on the frozen F with constant
noise 0: a corrupted word count is scaled toward zero,
``x~ = (1 - A(x)) x``. Evaluation writes, in the work dir:

* ``tables.md`` and ``tables.png``: Tables 1-2 of the paper (documents of
  comp.sys.mac.hardware and soc.religion.christian) and one such row for
  every class: the document's words and the 15 words of highest importance
  ``1 - A(x)`` over the whole vocabulary, words present in the document
  highlighted;
* ``deletion_curve.png`` and ``metrics.json``: whether those words matter to
  F (the deletion curve in LAN order against random order, and against the
  gradient x input of F as a reference), whether they are in the document and
  whether they are associated with its class.

A property of this setup worth knowing when reading the masks: F averages,
so ``F(c x) = F(x)``, and with noise 0 the corruption only rescales counts.
Scaling every word by the same factor costs no fidelity, so eq. 3 lets A push
the whole mask toward 1 for free (mean A(x) ends near 0.999); what ranks the
words is only how far each word's share may move, a weaker signal than
deleting it. Ranking (top-k, deletion order) is therefore by ``1 - A(x)``
relative to the other words, which saturation of the sigmoid preserves.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

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


def make_lan(config, vocab_size: int) -> LatentAttentionNetwork:
  return LatentAttentionNetwork((vocab_size,), tuple(config.lan.hidden),
                                rngs=nnx.Rngs(config.seed + 1))


def _sample_docs(key, bow, labels, batch_size):
  idx = jax.random.randint(key, (batch_size,), 0, bow.num_docs)
  return ng.dense_batch(bow, idx), labels[idx]


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

  def f_batch(d, key):
    x, y = _sample_docs(key, d['bow'], d['labels'], config.f.batch_size)
    return {'x': x, 'y': y}

  def lan_batch(d, key):
    return _sample_docs(key, d['bow'], d['labels'], config.lan.batch_size)[0]

  def f_eval(f):
    pred = map_docs(lambda x, i, _: jnp.argmax(f(x), -1), test_bow,
                    chunk=config.eval.chunk)
    return {'accuracy': (pred == test_labels).mean()}

  return skeleton.Task(
      name='', make_f=lambda: make_f(config, len(vocab)),
      make_lan=lambda: make_lan(config, len(vocab)),
      train_data={'bow': bow['train'], 'labels': jnp.asarray(labels['train'])},
      f_batch=f_batch, lan_batch=lan_batch, noise=make_noise(config),
      keys=tuple(jax.random.split(jax.random.key(config.seed), 3)),
      f_forward=lambda model, x, key: model(x, dropout_key=key),
      f_eval=f_eval)


def tasks(config, data) -> list[skeleton.Task]:
  return [make_task(config, data)]


def make_noise(config):
  if config.lan.noise != 'constant':
    raise ValueError(
        f'The 20 Newsgroups experiment uses constant noise (a corrupted count '
        f'is scaled toward config.lan.noise_value), got config.lan.noise='
        f'{config.lan.noise!r}.')
  return noise_lib.make_noise('constant', value=config.lan.noise_value)


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

  # Deletion curves: F's probability of its predicted class as the words of
  # a document are zeroed, most important first (LAN) or in random order.
  n_del = min(config.eval.deletion_docs, test_bow.num_docs)
  del_bow = _subset(test_bow, n_del)
  steps = config.eval.deletion_steps
  del_key = jax.random.fold_in(task.keys[2], 1)

  @jax.jit
  def deletion(bow_subset, key):
    def fn(x, idx, key):
      ids, valid = _doc_window(bow_subset, idx)
      imp = metrics_lib.importance(a(x))
      lan_order = _order(jnp.take_along_axis(imp, ids, -1), ids, valid)
      rand = jax.random.uniform(jax.random.fold_in(key, idx[0]), ids.shape)
      rand_order = _order(rand, ids, valid)
      # A reference that looks inside F: gradient x input of the log
      # probability of F's prediction.
      pred = jnp.argmax(f(x), -1)
      logp = lambda z: jnp.take_along_axis(jax.nn.log_softmax(f(z)),
                                           pred[:, None], -1).sum()
      saliency = jax.grad(logp)(x) * x
      grad_order = _order(jnp.take_along_axis(saliency, ids, -1), ids, valid)
      out = {}
      for name, order in (('lan', lan_order), ('random', rand_order),
                          ('gradient', grad_order)):
        curve, auc = metrics_lib.deletion_curve(f, x, order, num_steps=steps)
        out[f'curve_{name}'], out[f'auc_{name}'] = curve.T, auc
      return out
    return map_docs(fn, bow_subset, chunk=config.eval.chunk, extra=key)

  dele = jax.device_get(deletion(del_bow, del_key))
  frac = np.linspace(0.0, 1.0, steps + 1)
  curve_lan = dele['curve_lan'].mean(0)
  curve_rand = dele['curve_random'].mean(0)
  curve_grad = dele['curve_gradient'].mean(0)

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
      'deletion': {
          'num_docs': int(n_del), 'num_steps': int(steps),
          'auc_lan_order': float(dele['auc_lan'].mean()),
          'auc_random_order': float(dele['auc_random'].mean()),
          'auc_gradient_x_input_order': float(dele['auc_gradient'].mean()),
          'share_docs_lan_below_random': float(
              (dele['auc_lan'] < dele['auc_random']).mean()),
          'fraction_deleted': frac.tolist(),
          'curve_lan_order': curve_lan.tolist(),
          'curve_random_order': curve_rand.tolist(),
          'curve_gradient_x_input_order': curve_grad.tolist(),
      },
      'beta': float(config.lan.beta),
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
          'deletion': 'F\'s softmax probability of its prediction on the '
                      'clean document while the document\'s distinct words '
                      'are zeroed, most important first (LAN order: '
                      'decreasing 1 - A(x)), in random order, or, as a '
                      'reference that reads F\'s gradients, by decreasing '
                      'gradient x input of log p(prediction); '
                      f'{steps} steps of equal fractions of the words; AUC by '
                      'the trapezoid rule over the fraction deleted (lower: '
                      'the order removes what F needs sooner)',
          'mask_mean': 'mean of A(x) over all vocabulary words (over the '
                       'document\'s words for mask_mean_on_document_words)',
      },
  }
  d = m['deletion']
  span = d['auc_random_order'] - d['auc_gradient_x_input_order']
  d['lan_share_of_gradient_gain'] = float(
      (d['auc_random_order'] - d['auc_lan_order']) / span) if span else None
  m['definitions']['lan_share_of_gradient_gain'] = (
      '(AUC random - AUC LAN) / (AUC random - AUC gradient x input): 0 is no '
      'better than random, 1 as good as the gradient reference')
  m['claims'] = {
      'f_accuracy_at_least_75_percent': m['f_test_accuracy'] >= 0.75,
      'lan_order_deletes_what_f_needs_sooner_than_random':
          m['deletion']['auc_lan_order'] < m['deletion']['auc_random_order'],
      'topk_words_more_often_in_document_than_random_words':
          m['topk_in_document_share']
          > m['topk_in_document_share_random_words'],
      'topk_words_more_class_associated_than_vocabulary':
          m['topk_class_associated_share']
          > m['class_associated_share_random_vocab_words'],
  }

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
  figures.curve(
      [np.stack([frac, curve_lan], 1), np.stack([frac, curve_rand], 1),
       np.stack([frac, curve_grad], 1)],
      os.path.join(workdir, 'deletion_curve.png'),
      title=f'Deletion of document words ({n_del} test documents)\nAUC: LAN '
            f'order {m["deletion"]["auc_lan_order"]:.3f}, random '
            f'{m["deletion"]["auc_random_order"]:.3f}, gradient x input '
            f'{m["deletion"]["auc_gradient_x_input_order"]:.3f}',
      xlabel='fraction of the document\'s distinct words zeroed',
      ylabel='F\'s probability of its prediction',
      labels=['LAN order (most important first)', 'random order',
              'gradient x input of F (reference)'])

  print(f'F test accuracy {m["f_test_accuracy"]:.4f}; top-{k} words in the '
        f'document {m["topk_in_document_share"]:.3f} (random words '
        f'{m["topk_in_document_share_random_words"]:.3f}); class-associated '
        f'{m["topk_class_associated_share"]:.3f} (vocabulary '
        f'{m["class_associated_share_random_vocab_words"]:.3f}, document '
        f'words {m["class_associated_share_document_words"]:.3f}); deletion '
        f'AUC LAN {m["deletion"]["auc_lan_order"]:.3f} vs random '
        f'{m["deletion"]["auc_random_order"]:.3f} (gradient x input '
        f'{m["deletion"]["auc_gradient_x_input_order"]:.3f})', flush=True)
  return m


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


EXPERIMENT = skeleton.Experiment(
    name='newsgroups', load_data=load_data, tasks=tasks,
    evaluate=evaluate_task, describe=describe)
