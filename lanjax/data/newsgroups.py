"""20 Newsgroups, "bydate" split, as in Grimm et al. (section 5.3, appendix C).

The paper used Ana Cardoso-Cachopo's stop-word-free version of the "bydate"
split (11,293 train / 7,528 test documents). This module derives its own from
the raw messages of ``20news-bydate.tar.gz`` with the same recipe:

1. the document is the message's ``Subject:`` line followed by its body (the
   other headers are dropped);
2. letters only: everything that is not an ASCII letter is a separator;
3. lowercase;
4. words shorter than ``min_length`` (3) are dropped (her "no-short" step);
5. stop words are dropped (the SMART list, ``stopwords_en.txt`` beside this
   file);
6. documents left without words are dropped.

Importing this module registers the TFDS dataset ``twenty_newsgroups``
(`TwentyNewsgroups`), prepared from a manual dir that holds the tarball (e.g.
``../shared/data/20news``) or downloaded where there is internet, and read
back with ``tfds.data_source`` (array_record) through `lanjax.data.tfds_data`.

Bag-of-words inputs are kept sparse on the device (`BagOfWords`: the
``(word id, count)`` pairs of all documents, concatenated) and made dense one
batch at a time inside the jitted step (`dense_batch`), so a 11k x V count
matrix never has to exist.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import importlib.resources
import os
import re
from typing import Iterable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

NAME = 'twenty_newsgroups'
ARCHIVE = '20news-bydate.tar.gz'
URL = 'http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz'
UNK = 'UNK'  # never a token: tokens are lowercase
GROUPS = (
    'alt.atheism', 'comp.graphics', 'comp.os.ms-windows.misc',
    'comp.sys.ibm.pc.hardware', 'comp.sys.mac.hardware', 'comp.windows.x',
    'misc.forsale', 'rec.autos', 'rec.motorcycles', 'rec.sport.baseball',
    'rec.sport.hockey', 'sci.crypt', 'sci.electronics', 'sci.med', 'sci.space',
    'soc.religion.christian', 'talk.politics.guns', 'talk.politics.mideast',
    'talk.politics.misc', 'talk.religion.misc')
MIN_LENGTH = 3

_LETTERS = re.compile(r'[a-z]+')


# ----------------------------------------------------------------------------
# Preprocessing (pure Python).


@functools.cache
def stop_words() -> frozenset[str]:
  """The SMART English stop list kept in ``stopwords_en.txt`` (570 words)."""
  text = importlib.resources.files('lanjax.data').joinpath(
      'stopwords_en.txt').read_text()
  return frozenset(line.strip() for line in text.splitlines()
                   if line.strip() and not line.startswith('#'))


def parse_message(raw: str) -> tuple[str, str]:
  """Splits a news message into ``(subject, body)``.

  The headers end at the first empty line; the subject is the value of the
  first ``Subject:`` header ('' if there is none). A message without an empty
  line is all headers.
  """
  raw = raw.replace('\r\n', '\n').replace('\r', '\n')
  head, _, body = raw.partition('\n\n')
  subject = ''
  for line in head.split('\n'):
    if line[:8].lower() == 'subject:':
      subject = line[8:].strip()
      break
  return subject, body


def tokenize(text: str, *, stop: Optional[Iterable[str]] = None,
             min_length: int = MIN_LENGTH) -> list[str]:
  """Letters-only, lowercase words of ``text`` without stop and short words.

  Args:
    text: any text.
    stop: the stop words; defaults to `stop_words`. Pass ``()`` for none.
    min_length: words shorter than this are dropped.

  Returns:
    The words, in order of occurrence.

  Example:
    >>> tokenize("Re: The Mac's ROM (v2.0) won't BOOT!")
    ['mac', 'rom', 'won', 'boot']
  """
  stop = stop_words() if stop is None else frozenset(stop)
  return [w for w in _LETTERS.findall(text.lower())
          if len(w) >= min_length and w not in stop]


def preprocess(raw: str, *, stop: Optional[Iterable[str]] = None,
               min_length: int = MIN_LENGTH) -> list[str]:
  """The words of a raw message: its subject, then its body (see `tokenize`)."""
  subject, body = parse_message(raw)
  return tokenize(subject + '\n' + body, stop=stop, min_length=min_length)


# ----------------------------------------------------------------------------
# Vocabulary and bags of words.


def build_vocabulary(docs: Iterable[Sequence[str]], *, size: int,
                     min_count: int = 1) -> list[str]:
  """The ``size`` most frequent words of ``docs``, after `UNK` at index 0.

  Words are ranked by count over all documents, ties broken alphabetically so
  the vocabulary is the same on every run. Words seen fewer than
  ``min_count`` times are left out, so the vocabulary may be smaller than
  ``size``; every word left out is read as `UNK`.

  Args:
    docs: the training documents, each a sequence of words.
    size: the vocabulary size, `UNK` included (>= 2).
    min_count: the least count of a word kept.

  Returns:
    ``[UNK, w_1, ..., w_{size-1}]``.
  """
  if size < 2:
    raise ValueError(f'The vocabulary size must be >= 2 (UNK and one word), '
                     f'got {size}.')
  counts = collections.Counter()
  for doc in docs:
    counts.update(doc)
  ranked = sorted((w for w, c in counts.items() if c >= min_count),
                  key=lambda w: (-counts[w], w))
  return [UNK] + ranked[:size - 1]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BagOfWords:
  """Documents as sparse word counts, concatenated (a pytree of arrays).

  Document ``i`` holds the distinct word ids ``ids[offsets[i]:offsets[i] +
  lengths[i]]`` with their ``counts``. The flat arrays are padded with
  ``max_length`` zeros at the end, so a window of ``max_length`` entries from
  any offset stays in bounds; ``vocab_size`` and ``max_length`` are static.
  """
  ids: jax.Array  # (T + max_length,) int32
  counts: jax.Array  # (T + max_length,) float32
  offsets: jax.Array  # (N,) int32
  lengths: jax.Array  # (N,) int32
  vocab_size: int = dataclasses.field(metadata=dict(static=True))
  max_length: int = dataclasses.field(metadata=dict(static=True))

  @property
  def num_docs(self) -> int:
    return self.offsets.shape[0]


def bag_of_words(docs: Sequence[Sequence[str]],
                 vocab: Sequence[str]) -> BagOfWords:
  """Encodes documents as `BagOfWords` over ``vocab`` (unknown words -> UNK).

  Args:
    docs: N documents, each a sequence of words.
    vocab: the vocabulary, `UNK` at index 0 (see `build_vocabulary`).

  Returns:
    A `BagOfWords` of NumPy arrays.
  """
  if not vocab or vocab[0] != UNK:
    raise ValueError(f'The vocabulary must start with {UNK!r}; build it with '
                     'build_vocabulary.')
  index = {w: i for i, w in enumerate(vocab)}
  ids, counts, lengths = [], [], []
  for doc in docs:
    c = collections.Counter(index.get(w, 0) for w in doc)
    keys = sorted(c)
    ids.extend(keys)
    counts.extend(c[k] for k in keys)
    lengths.append(len(keys))
  lengths = np.asarray(lengths, np.int32)
  max_length = max(int(lengths.max(initial=0)), 1)
  offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
  pad = np.zeros(max_length, np.int32)
  return BagOfWords(
      ids=np.concatenate([np.asarray(ids, np.int32), pad]),
      counts=np.concatenate([np.asarray(counts, np.float32),
                             pad.astype(np.float32)]),
      offsets=offsets, lengths=lengths, vocab_size=len(vocab),
      max_length=max_length)


def dense_batch(bow: BagOfWords, idx):
  """Count vectors of documents ``idx``: ``(B,)`` ints -> ``(B, V)`` float32.

  Jit-safe: the window of ``max_length`` entries per document is static.
  """
  window = jnp.arange(bow.max_length)
  pos = bow.offsets[idx][:, None] + window[None, :]  # (B, L)
  valid = window[None, :] < bow.lengths[idx][:, None]
  ids = bow.ids[pos]
  counts = jnp.where(valid, bow.counts[pos], 0.0)
  rows = jnp.arange(idx.shape[0])[:, None]
  out = jnp.zeros((idx.shape[0], bow.vocab_size), jnp.float32)
  return out.at[rows, ids].add(counts)


def words_of(doc: Sequence[str], vocab: Sequence[str]) -> list[str]:
  """The distinct vocabulary words of a document (unknown words as UNK)."""
  known = set(vocab)
  return sorted({w if w in known else UNK for w in doc})


# ----------------------------------------------------------------------------
# The TFDS dataset.


class TwentyNewsgroups(tfds.core.GeneratorBasedBuilder):
  """20 Newsgroups "bydate", subject + body, letters only, no stop words."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'Subject and body, lowercase letters-only words of length '
               '>= 3, SMART stop words removed, empty documents dropped.',
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Place {ARCHIVE} (the "bydate" split of 20 Newsgroups, layout '
      '20news-bydate-{train,test}/<group>/<id>) in the manual dir, e.g. '
      f'../shared/data/20news; it is downloaded from {URL} otherwise.')

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'The 20 Newsgroups "bydate" split (train: messages before, test: '
            'after a date), each message reduced to the words of its subject '
            'and body: letters only, lowercase, words shorter than 3 letters '
            'and SMART stop words removed, empty documents dropped (cf. '
            'Cardoso-Cachopo\'s "no-stop" version used by Grimm et al.).'),
        features=tfds.features.FeaturesDict({
            'words': tfds.features.Text(),  # the words, space-separated
            'subject': tfds.features.Text(),  # the raw subject line
            'label': tfds.features.ClassLabel(names=GROUPS),
            'id': tfds.features.Text(),  # '<group>/<article number>'
        }),
        supervised_keys=('words', 'label'),
        homepage='http://qwone.com/~jason/20Newsgroups/',
    )

  def _split_generators(self, dl_manager):
    archive = _manual_archive(dl_manager)
    if archive is None:
      archive = dl_manager.download(URL)
    return {split: self._generate_examples(dl_manager.iter_archive(archive),
                                           split)
            for split in ('train', 'test')}

  def _generate_examples(self, files, split):
    prefix = f'20news-bydate-{split}/'
    for path, fobj in files:
      path = str(path).replace(os.sep, '/')
      at = path.find(prefix)
      if at < 0:
        continue
      parts = path[at + len(prefix):].split('/')
      if len(parts) != 2 or parts[0] not in GROUPS:
        continue
      raw = fobj.read().decode('latin-1')
      words = preprocess(raw)
      if not words:
        continue  # empty after preprocessing
      key = f'{parts[0]}/{parts[1]}'
      yield key, {'words': ' '.join(words),
                  'subject': parse_message(raw)[0],
                  'label': parts[0], 'id': key}


def _manual_archive(dl_manager):
  """The tarball in the manual dir, or None where there is none."""
  try:
    manual_dir = dl_manager.manual_dir
  except (AssertionError, ValueError):  # no manual dir, or an empty one
    return None
  path = manual_dir / ARCHIVE
  return path if path.exists() else None
