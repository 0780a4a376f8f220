/*
 * spamkit.tokenizer._fast: the tokenizer's hot loops in C.
 *
 * Splitting text into words and hashing the tokens were half of the tokenizer's time in Python
 * (docs/decisions/0006-compiled-tokenizer-core.md). This module does both without making
 * a Python string per word: a word goes from the text straight to its 8-byte key. The
 * Received hosts, their parent domains and networks are made the same way
 * (received_keys; docs/decisions/0009; the reference is spamkit/tokenizer/received.py),
 * and so are the tokens of ASCII URLs (url_keys; the reference is urls.tokens_of_url) and
 * a message's header words in one call (hash_prefixed_words; docs/decisions/0014), and
 * then all of the selected headers' tokens in one call (header_keys; decision 0062; the
 * reference is spamkit/tokenizer/headers.py).
 * message_sample makes what the byte model reads of a message; byte_log_odds and
 * byte_step score a message and take a learning step from the distinct buckets of its
 * windows, without making an array of them (docs/decisions/0024; the reference is
 * spamkit/bytemodel.py's Python and numpy).
 *
 * It must give exactly what the Python code gives (tests/engine/test_fast_tokenizer.py
 * compares them on the whole corpus and on hypothesis's strings):
 *   - words are str.split() words (Py_UNICODE_ISSPACE separators), lengths in code points;
 *   - a token's key is XXH3-64 (seed 0, default secret) of its UTF-8 form, surrogates
 *     written as three bytes ("surrogatepass"), as 8 big-endian bytes (xxh3_64_digest);
 *   - CJK runs become overlapping character pairs with the same 20,000-character budget.
 * XXH3-64 is implemented here for inputs up to 240 bytes (every word and nearly every
 * token); longer inputs are handed to the xxhash package, the reference.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- XXH3-64 (<= 240 bytes) */

static const uint8_t SECRET[192] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

#define PRIME32_1 0x9E3779B1U
#define PRIME64_1 0x9E3779B185EBCA87ULL
#define PRIME64_2 0xC2B2AE3D27D4EB4FULL
#define PRIME64_3 0x165667B19E3779F9ULL
#define PRIME_MX1 0x165667919E3779F9ULL
#define PRIME_MX2 0x9FB21C651E98DF25ULL
#define MAX_SHORT_INPUT 240

static inline uint64_t read64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if PY_BIG_ENDIAN
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t read32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if PY_BIG_ENDIAN
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t mul128_fold64(uint64_t a, uint64_t b) {
    __uint128_t product = (__uint128_t)a * b;
    return (uint64_t)product ^ (uint64_t)(product >> 64);
}

static inline uint64_t xxh64_avalanche(uint64_t h) {
    h ^= h >> 33;
    h *= PRIME64_2;
    h ^= h >> 29;
    h *= PRIME64_3;
    return h ^ (h >> 32);
}

static inline uint64_t xxh3_avalanche(uint64_t h) {
    h ^= h >> 37;
    h *= PRIME_MX1;
    return h ^ (h >> 32);
}

static inline uint64_t rrmxmx(uint64_t h, uint64_t len) {
    h ^= rotl64(h, 49) ^ rotl64(h, 24);
    h *= PRIME_MX2;
    h ^= (h >> 35) + len;
    h *= PRIME_MX2;
    return h ^ (h >> 28);
}

static inline uint64_t mix16(const uint8_t *in, const uint8_t *secret) {
    return mul128_fold64(read64(in) ^ read64(secret), read64(in + 8) ^ read64(secret + 8));
}

/* XXH3-64 with seed 0 and the default secret, for len <= MAX_SHORT_INPUT. */
static uint64_t xxh3_short(const uint8_t *in, size_t len) {
    if (len == 0)
        return xxh64_avalanche(read64(SECRET + 56) ^ read64(SECRET + 64));
    if (len <= 3) {
        uint32_t combined = ((uint32_t)in[0] << 16) | ((uint32_t)in[len >> 1] << 24)
                            | (uint32_t)in[len - 1] | ((uint32_t)len << 8);
        uint64_t bitflip = (uint64_t)(read32(SECRET) ^ read32(SECRET + 4));
        return xxh64_avalanche((uint64_t)combined ^ bitflip);
    }
    if (len <= 8) {
        uint64_t bitflip = read64(SECRET + 8) ^ read64(SECRET + 16);
        uint64_t input64 = (uint64_t)read32(in + len - 4) + ((uint64_t)read32(in) << 32);
        return rrmxmx(input64 ^ bitflip, len);
    }
    if (len <= 16) {
        uint64_t low = read64(in) ^ (read64(SECRET + 24) ^ read64(SECRET + 32));
        uint64_t high = read64(in + len - 8) ^ (read64(SECRET + 40) ^ read64(SECRET + 48));
        uint64_t acc = len + __builtin_bswap64(low) + high + mul128_fold64(low, high);
        return xxh3_avalanche(acc);
    }
    uint64_t acc = len * PRIME64_1;
    if (len <= 128) {
        if (len > 32) {
            if (len > 64) {
                if (len > 96) {
                    acc += mix16(in + 48, SECRET + 96);
                    acc += mix16(in + len - 64, SECRET + 112);
                }
                acc += mix16(in + 32, SECRET + 64);
                acc += mix16(in + len - 48, SECRET + 80);
            }
            acc += mix16(in + 16, SECRET + 32);
            acc += mix16(in + len - 32, SECRET + 48);
        }
        acc += mix16(in, SECRET);
        acc += mix16(in + len - 16, SECRET + 16);
        return xxh3_avalanche(acc);
    }
    size_t rounds = len / 16;
    for (size_t i = 0; i < 8; i++)
        acc += mix16(in + 16 * i, SECRET + 16 * i);
    acc = xxh3_avalanche(acc);
    for (size_t i = 8; i < rounds; i++)
        acc += mix16(in + 16 * i, SECRET + 16 * (i - 8) + 3);
    acc += mix16(in + len - 16, SECRET + 136 - 17);
    return xxh3_avalanche(acc);
}

/* ------------------------------------------------------------------------ key buffers */

/* The distinct 64-bit keys of one call: open addressing, linear probing, grown at half
 * full. (Sorting the keys with qsort to de-duplicate them cost a third of the call.) */
typedef struct {
    uint64_t *slots;
    size_t count, mask;
    int has_zero; /* 0 marks an empty slot, so the key 0 is kept aside */
    uint64_t inline_slots[256];
} KeySet;

static void keys_init(KeySet *set) {
    memset(set->inline_slots, 0, sizeof(set->inline_slots));
    set->slots = set->inline_slots;
    set->count = 0;
    set->mask = 255;
    set->has_zero = 0;
}

static void keys_free(KeySet *set) {
    if (set->slots != set->inline_slots)
        PyMem_Free(set->slots);
}

static inline size_t slot_of(uint64_t key, size_t mask) {
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 17) & mask;
}

static int keys_add(KeySet *set, uint64_t key) {
    if (key == 0) {
        set->has_zero = 1;
        return 0;
    }
    size_t i = slot_of(key, set->mask);
    while (set->slots[i] != 0) {
        if (set->slots[i] == key)
            return 0;
        i = (i + 1) & set->mask;
    }
    set->slots[i] = key;
    if (++set->count * 2 <= set->mask)
        return 0;
    size_t mask = set->mask * 2 + 1;
    uint64_t *grown = PyMem_Calloc(mask + 1, sizeof(uint64_t));
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t j = 0; j <= set->mask; j++) {
        uint64_t old = set->slots[j];
        if (old == 0)
            continue;
        size_t k = slot_of(old, mask);
        while (grown[k] != 0)
            k = (k + 1) & mask;
        grown[k] = old;
    }
    keys_free(set);
    set->slots = grown;
    set->mask = mask;
    return 0;
}

static PyObject *reference_hash; /* xxhash.xxh3_64_intdigest, for inputs over 240 bytes */

/* UTF-8 of code points [start, end) of a str, surrogates as three bytes, after prefix. */
static inline size_t encode_utf8(int kind, const void *data, Py_ssize_t start, Py_ssize_t end,
                          uint8_t *out) {
    size_t n = 0;
    for (Py_ssize_t i = start; i < end; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c < 0x80) {
            out[n++] = (uint8_t)c;
        } else if (c < 0x800) {
            out[n++] = (uint8_t)(0xC0 | (c >> 6));
            out[n++] = (uint8_t)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out[n++] = (uint8_t)(0xE0 | (c >> 12));
            out[n++] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
            out[n++] = (uint8_t)(0x80 | (c & 0x3F));
        } else {
            out[n++] = (uint8_t)(0xF0 | (c >> 18));
            out[n++] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
            out[n++] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
            out[n++] = (uint8_t)(0x80 | (c & 0x3F));
        }
    }
    return n;
}

/* Hash a byte string of any length; -1 with an exception set on failure. */
static int hash_bytes(const uint8_t *bytes, size_t length, uint64_t *key) {
    if (length <= MAX_SHORT_INPUT) {
        *key = xxh3_short(bytes, length);
        return 0;
    }
    PyObject *value = PyObject_CallFunction(reference_hash, "y#", (const char *)bytes,
                                            (Py_ssize_t)length);
    if (value == NULL)
        return -1;
    *key = PyLong_AsUnsignedLongLong(value);
    Py_DECREF(value);
    return (*key == (uint64_t)-1 && PyErr_Occurred()) ? -1 : 0;
}

static int add_digest(PyObject *out, uint64_t key) {
    uint64_t big = key;
#if !PY_BIG_ENDIAN
    big = __builtin_bswap64(big);
#endif
    PyObject *digest = PyBytes_FromStringAndSize((const char *)&big, 8);
    if (digest == NULL)
        return -1;
    int failed = PySet_Add(out, digest);
    Py_DECREF(digest);
    return failed;
}

/* Add the keys to a Python set as 8-byte big-endian bytes (xxh3_64_digest's form). */
static int keys_into_set(KeySet *set, PyObject *out) {
    if (set->has_zero && add_digest(out, 0))
        return -1;
    for (size_t i = 0; i <= set->mask; i++)
        if (set->slots[i] != 0 && add_digest(out, set->slots[i]))
            return -1;
    return 0;
}

/* ----------------------------------------------------------------------------- words */

#define SMALL_PREFIX_BYTES 64  /* a prefix this long or shorter is copied on the stack */
#define MAX_CJK_CHARS 20000

static inline int is_cjk(Py_UCS4 c) {
    return (c >= 0x3040 && c <= 0x30ff) || (c >= 0x3400 && c <= 0x4dbf)
           || (c >= 0x4e00 && c <= 0x9fff) || (c >= 0xac00 && c <= 0xd7af)
           || (c >= 0xf900 && c <= 0xfaff);
}

/* Key of prefix + text[start:end]; the word is at most max_word code points long. */
static inline __attribute__((always_inline)) int word_key(const uint8_t *prefix, size_t prefix_length, int kind, const void *data,
                    Py_ssize_t start, Py_ssize_t end, uint8_t *buffer, uint64_t *key) {
    memcpy(buffer, prefix, prefix_length);
    size_t length = prefix_length + encode_utf8(kind, data, start, end, buffer + prefix_length);
    return hash_bytes(buffer, length, key);
}

PyDoc_STRVAR(hash_words_doc,
"hash_words(text, prefix, min_word, max_word, out, plain=False) -> (long_words, at_words)\n\n"
"Add to the set `out` the keys of prefix + w for each distinct str.split() word w of\n"
"min_word to max_word characters, and of prefix + each CJK character pair. Returns the\n"
"longer words and the words (of at least min_word characters) that contain '@'.\n"
"With `plain`, a word is a match of the regex [\\w$][\\w'$.-]*[\\w$!] instead (such a\n"
"word never holds '@'); the '@' words are still the str.split() words that hold one\n"
"(each once for each place it occurs).");

/* The plain word regex [\w$][\w'$.-]*[\w$!], as Python's re reads it on str: \w is
 * Py_UNICODE_ISALNUM or '_'. */
static inline int is_word_char(Py_UCS4 c) {
    if (c < 128)  /* ASCII without the four Unicode database calls ISALNUM makes */
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')
               || c == '_';
    return Py_UNICODE_ISALNUM(c);
}
static inline int plain_inner(Py_UCS4 c) {
    return is_word_char(c) || c == '$' || c == '\'' || c == '.' || c == '-';
}

/* The end of the plain word starting at `start` (whose character is \w or $), or -1 when
 * none does: the inner run is greedy, then gives back characters until one can end the
 * word; only '!' can end it after the whole run. Same match as re.findall. */
static inline __attribute__((always_inline)) Py_ssize_t plain_word_end(int kind, const void *data, Py_ssize_t n, Py_ssize_t start) {
    Py_ssize_t j = start + 1;
    while (j < n && plain_inner(PyUnicode_READ(kind, data, j)))
        j++;
    if (j < n && PyUnicode_READ(kind, data, j) == '!')
        return j + 1;
    for (Py_ssize_t k = j - 1; k > start; k--) {
        Py_UCS4 c = PyUnicode_READ(kind, data, k);
        if (is_word_char(c) || c == '$')
            return k + 1;
    }
    return -1;
}

/* words_into's work, `buffer` holding prefix_length + max_word * 4 bytes, for a text of
 * this `kind`: inlined once for each kind (words_into_buffer), so that reading a character
 * is not a switch on the kind (a message's body words took 30 µs, now 26: decision 0062). */
static inline __attribute__((always_inline)) int words_of_kind(
        int kind, KeySet *keys, PyObject *text, const char *prefix, Py_ssize_t prefix_length,
        Py_ssize_t min_word, Py_ssize_t max_word, int plain, PyObject *long_words,
        PyObject *at_words, uint8_t *buffer) {
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    Py_ssize_t i = 0;
    while (i < n) {
        Py_ssize_t start;
        int has_at = 0;
        if (plain) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (!(is_word_char(c) || c == '$')) {
                i++;
                continue;
            }
            Py_ssize_t end = plain_word_end(kind, data, n, i);
            if (end < 0) {
                i++;
                continue;
            }
            start = i;
            i = end;
        } else {
            while (i < n && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i)))
                i++;
            if (i >= n)
                break;
            start = i;
            while (i < n) {
                Py_UCS4 c = PyUnicode_READ(kind, data, i);
                if (Py_UNICODE_ISSPACE(c))
                    break;
                has_at |= (c == '@');
                i++;
            }
        }
        Py_ssize_t length = i - start;
        if (length < min_word)
            continue;
        if (long_words != NULL && (length > max_word || has_at)) {
            PyObject *word = PyUnicode_Substring(text, start, i);
            if (word == NULL)
                return -1;
            int failed = 0;
            if (length > max_word)
                failed |= PyList_Append(long_words, word);
            if (has_at)
                failed |= PyList_Append(at_words, word);
            Py_DECREF(word);
            if (failed)
                return -1;
        }
        if (length > max_word)
            continue;
        uint64_t key;
        if (word_key((const uint8_t *)prefix, prefix_length, kind, data, start, i, buffer, &key)
            || keys_add(keys, key))
            return -1;
    }

    if (plain && at_words != NULL) {  /* the str.split() words holding an '@' (a plain word never does) */
        Py_ssize_t at = 0;
        while (at < n && (at = PyUnicode_FindChar(text, '@', at, n, 1)) >= 0) {
            Py_ssize_t start = at, end = at + 1;
            while (start > 0 && !Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, start - 1)))
                start--;
            while (end < n && !Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, end)))
                end++;
            if (end - start >= min_word) {
                PyObject *word = PyUnicode_Substring(text, start, end);
                if (word == NULL || PyList_Append(at_words, word)) {
                    Py_XDECREF(word);
                    return -1;
                }
                Py_DECREF(word);
            }
            at = end;
        }
        if (at == -2)
            return -1;
    }

    if (kind != PyUnicode_1BYTE_KIND || !PyUnicode_IS_ASCII(text)) {
        Py_ssize_t budget = MAX_CJK_CHARS;
        i = 0;
        while (i < n && budget > 0) {
            while (i < n && !is_cjk(PyUnicode_READ(kind, data, i)))
                i++;
            Py_ssize_t start = i;
            while (i < n && is_cjk(PyUnicode_READ(kind, data, i)))
                i++;
            Py_ssize_t run = i - start;
            if (run < 2)
                continue;
            Py_ssize_t used = run < budget ? run : budget;
            for (Py_ssize_t j = start; j + 1 < start + used; j++) {
                uint64_t key;
                if (word_key((const uint8_t *)prefix, prefix_length, kind, data, j, j + 2,
                             buffer, &key) || keys_add(keys, key))
                    return -1;
            }
            budget -= used;
        }
    }
    return 0;
}

static int words_into_buffer(KeySet *keys, PyObject *text, const char *prefix,
                             Py_ssize_t prefix_length, Py_ssize_t min_word, Py_ssize_t max_word,
                             int plain, PyObject *long_words, PyObject *at_words,
                             uint8_t *buffer) {
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND:
        return words_of_kind(PyUnicode_1BYTE_KIND, keys, text, prefix, prefix_length, min_word, max_word,
                             plain, long_words, at_words, buffer);
    case PyUnicode_2BYTE_KIND:
        return words_of_kind(PyUnicode_2BYTE_KIND, keys, text, prefix, prefix_length, min_word, max_word,
                             plain, long_words, at_words, buffer);
    default:
        return words_of_kind(PyUnicode_4BYTE_KIND, keys, text, prefix, prefix_length, min_word, max_word,
                             plain, long_words, at_words, buffer);
    }
}

/* The keys of prefix + each word (and CJK pair) of `text` into `keys`; the longer words
 * and the '@' words into those lists, unless they are NULL. -1 with an exception set.
 * A prefix of any length: the usual short one is copied on the stack. */
static int words_into(KeySet *keys, PyObject *text, const char *prefix, Py_ssize_t prefix_length,
                      Py_ssize_t min_word, Py_ssize_t max_word, int plain,
                      PyObject *long_words, PyObject *at_words) {
    if (max_word < 2 || max_word > 64) {
        PyErr_SetString(PyExc_ValueError, "max_word out of 2..64");
        return -1;
    }
    uint8_t small[SMALL_PREFIX_BYTES + 64 * 4];
    if (prefix_length <= SMALL_PREFIX_BYTES)
        return words_into_buffer(keys, text, prefix, prefix_length, min_word, max_word, plain,
                                 long_words, at_words, small);
    uint8_t *large = PyMem_Malloc((size_t)prefix_length + 64 * 4);
    if (large == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int failed = words_into_buffer(keys, text, prefix, prefix_length, min_word, max_word, plain,
                                   long_words, at_words, large);
    PyMem_Free(large);
    return failed;
}

static PyObject *hash_words(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *text, *out;
    const char *prefix;
    Py_ssize_t prefix_length, min_word, max_word;
    int plain = 0;
    if (!PyArg_ParseTuple(args, "Uy#nnO!|p", &text, &prefix, &prefix_length, &min_word,
                          &max_word, &PySet_Type, &out, &plain))
        return NULL;
    KeySet keys;
    keys_init(&keys);
    PyObject *long_words = PyList_New(0), *at_words = PyList_New(0);
    if (long_words == NULL || at_words == NULL
            || words_into(&keys, text, prefix, prefix_length, min_word, max_word, plain,
                          long_words, at_words)
            || keys_into_set(&keys, out)) {
        keys_free(&keys);
        Py_XDECREF(long_words);
        Py_XDECREF(at_words);
        return NULL;
    }
    keys_free(&keys);
    return Py_BuildValue("(NN)", long_words, at_words);
}

PyDoc_STRVAR(hash_prefixed_words_doc,
"hash_prefixed_words(pieces, min_word, max_word, out, plain=False)\n\n"
"hash_words for each (text, prefix) of the list `pieces`, into the set `out`, without\n"
"the longer and '@' words: what a message's header values need, in one call.");

static PyObject *hash_prefixed_words(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *pieces, *out;
    Py_ssize_t min_word, max_word;
    int plain = 0;
    if (!PyArg_ParseTuple(args, "O!nnO!|p", &PyList_Type, &pieces, &min_word, &max_word,
                          &PySet_Type, &out, &plain))
        return NULL;
    KeySet keys;
    keys_init(&keys);
    for (Py_ssize_t p = 0; p < PyList_GET_SIZE(pieces); p++) {
        PyObject *piece = PyList_GET_ITEM(pieces, p), *text;
        const char *prefix;
        Py_ssize_t prefix_length;
        if (!PyArg_ParseTuple(piece, "Uy#", &text, &prefix, &prefix_length)
                || words_into(&keys, text, prefix, prefix_length, min_word, max_word, plain, NULL, NULL)) {
            keys_free(&keys);
            return NULL;
        }
    }
    if (keys_into_set(&keys, out)) {
        keys_free(&keys);
        return NULL;
    }
    keys_free(&keys);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(hash_strings_doc,
"hash_strings(tokens, out)\n\n"
"Add to the set `out` the 8-byte key of each str in the iterable `tokens`.");

static PyObject *hash_strings(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *tokens, *out;
    if (!PyArg_ParseTuple(args, "OO!", &tokens, &PySet_Type, &out))
        return NULL;
    PyObject *iterator = PyObject_GetIter(tokens);
    if (iterator == NULL)
        return NULL;
    KeySet keys;
    keys_init(&keys);
    uint8_t small[MAX_SHORT_INPUT];
    PyObject *token;
    while ((token = PyIter_Next(iterator)) != NULL) {
        if (!PyUnicode_Check(token)) {
            PyErr_SetString(PyExc_TypeError, "tokens must be str");
            Py_DECREF(token);
            goto fail;
        }
        Py_ssize_t n = PyUnicode_GET_LENGTH(token);
        int kind = PyUnicode_KIND(token);
        const void *data = PyUnicode_DATA(token);
        uint64_t key;
        int failed;
        if ((size_t)n * 4 <= sizeof(small)) {
            failed = hash_bytes(small, encode_utf8(kind, data, 0, n, small), &key);
        } else {
            uint8_t *large = PyMem_Malloc((size_t)n * 4);
            if (large == NULL) {
                PyErr_NoMemory();
                Py_DECREF(token);
                goto fail;
            }
            failed = hash_bytes(large, encode_utf8(kind, data, 0, n, large), &key);
            PyMem_Free(large);
        }
        Py_DECREF(token);
        if (failed || keys_add(&keys, key))
            goto fail;
    }
    if (PyErr_Occurred() || keys_into_set(&keys, out))
        goto fail;
    Py_DECREF(iterator);
    keys_free(&keys);
    Py_RETURN_NONE;

fail:
    Py_DECREF(iterator);
    keys_free(&keys);
    return NULL;
}

/* -------------------------------------------------------------------------- Received */

/* The key of head + part (both UTF-8) into the key set. */
static int add_joined_token(KeySet *keys, const char *head, size_t head_length,
                              const uint8_t *part, size_t part_length) {
    uint8_t buffer[MAX_SHORT_INPUT];
    uint64_t key;
    if (head_length + part_length <= sizeof(buffer)) {
        memcpy(buffer, head, head_length);
        memcpy(buffer + head_length, part, part_length);
        return hash_bytes(buffer, head_length + part_length, &key) || keys_add(keys, key);
    }
    uint8_t *large = PyMem_Malloc(head_length + part_length);
    if (large == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(large, head, head_length);
    memcpy(large + head_length, part, part_length);
    int failed = hash_bytes(large, head_length + part_length, &key) || keys_add(keys, key);
    PyMem_Free(large);
    return failed;
}

static inline int is_host_char(Py_UCS4 c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

/* (?:from|by)\s+([a-z0-9.-]{3,100}) at s: the host's [start, end), the match's end; 0 if none. */
static inline __attribute__((always_inline)) int match_received_host(int kind, const void *data, Py_ssize_t n, Py_ssize_t s,
                               Py_ssize_t *host_start, Py_ssize_t *host_end) {
    Py_ssize_t k;
    if (s + 4 <= n && PyUnicode_READ(kind, data, s) == 'f' && PyUnicode_READ(kind, data, s + 1) == 'r'
            && PyUnicode_READ(kind, data, s + 2) == 'o' && PyUnicode_READ(kind, data, s + 3) == 'm')
        k = s + 4;
    else if (s + 2 <= n && PyUnicode_READ(kind, data, s) == 'b' && PyUnicode_READ(kind, data, s + 1) == 'y')
        k = s + 2;
    else
        return 0;
    Py_ssize_t spaces = k;
    while (k < n && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, k)))
        k++;
    if (k == spaces)
        return 0;
    Py_ssize_t start = k;
    while (k < n && k - start < 100 && is_host_char(PyUnicode_READ(kind, data, k)))
        k++;
    if (k - start < 3)
        return 0;
    *host_start = start;
    *host_end = k;
    return 1;
}

/* A host's tokens: host.strip(".") split at ".", the suffixes from each of the last four
   labels but the last one alone ("received:mx.example.com", "received:example.com"). */
static int add_host_tokens(KeySet *keys, int kind, const void *data, Py_ssize_t start, Py_ssize_t end) {
    while (start < end && PyUnicode_READ(kind, data, start) == '.')
        start++;
    while (end > start && PyUnicode_READ(kind, data, end - 1) == '.')
        end--;
    uint8_t host[100];
    size_t length = (size_t)(end - start);
    for (size_t i = 0; i < length; i++)
        host[i] = (uint8_t)PyUnicode_READ(kind, data, start + (Py_ssize_t)i);
    size_t label_starts[101];
    size_t labels = 0;
    label_starts[labels++] = 0;
    for (size_t i = 0; i < length; i++)
        if (host[i] == '.')
            label_starts[labels++] = i + 1;
    size_t first = labels > 4 ? labels - 4 : 0;
    for (size_t i = first; i + 1 < labels; i++)
        if (add_joined_token(keys, "received:", 9, host + label_starts[i], length - label_starts[i]))
            return -1;
    return 0;
}

/* \d{1,3} ending at `stop` (a char that is not a decimal digit) from k: its end, or -1. */
static Py_ssize_t ip_octet(int kind, const void *data, Py_ssize_t n, Py_ssize_t k, Py_UCS4 stop) {
    Py_ssize_t start = k;
    while (k < n && k - start < 3 && Py_UNICODE_ISDECIMAL(PyUnicode_READ(kind, data, k)))
        k++;
    if (k == start || k >= n || PyUnicode_READ(kind, data, k) != stop)
        return -1;
    return k;
}

PyDoc_STRVAR(received_keys_doc,
"received_keys(lowered, text, out)\n\n"
"Add to the set `out` the keys of the Received tokens of `text` (all Received values\n"
"joined; `lowered` is text.lower()): each host after \"from\" or \"by\" and its parent\n"
"domains, and the /24 and /16 of each [a.b.c.d] address.");

/* The hosts after "from" and "by" in `lowered`, for a string of this `kind` (inlined once
 * for each kind: reading a character is then no switch on the kind). */
static inline __attribute__((always_inline)) int received_hosts_of_kind(KeySet *keys, int kind, PyObject *lowered) {
    const void *data = PyUnicode_DATA(lowered);
    Py_ssize_t n = PyUnicode_GET_LENGTH(lowered);
    for (Py_ssize_t s = 0; s < n;) {
        Py_ssize_t host_start, host_end;
        if (match_received_host(kind, data, n, s, &host_start, &host_end)) {
            if (add_host_tokens(keys, kind, data, host_start, host_end))
                return -1;
            s = host_end;
        } else {
            s++;
        }
    }
    return 0;
}

/* received_keys's work into `keys`; -1 with an exception set. */
static int received_into(KeySet *keys, PyObject *lowered, PyObject *text) {
    int failed;
    switch (PyUnicode_KIND(lowered)) {
    case PyUnicode_1BYTE_KIND:
        failed = received_hosts_of_kind(keys, PyUnicode_1BYTE_KIND, lowered);
        break;
    case PyUnicode_2BYTE_KIND:
        failed = received_hosts_of_kind(keys, PyUnicode_2BYTE_KIND, lowered);
        break;
    default:
        failed = received_hosts_of_kind(keys, PyUnicode_4BYTE_KIND, lowered);
    }
    if (failed)
        return -1;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    for (Py_ssize_t s = 0; s < n; s++) {
        s = PyUnicode_FindChar(text, '[', s, n, 1);
        if (s < 0)
            return s == -1 ? 0 : -1;
        Py_ssize_t a = ip_octet(kind, data, n, s + 1, '.');
        Py_ssize_t b = a < 0 ? -1 : ip_octet(kind, data, n, a + 1, '.');
        Py_ssize_t c = b < 0 ? -1 : ip_octet(kind, data, n, b + 1, '.');
        Py_ssize_t d = c < 0 ? -1 : ip_octet(kind, data, n, c + 1, ']');
        if (d < 0)
            continue;
        /* "received:ip:" + text[s+1:c] (a.b.c) and + text[s+1:b] (a.b) */
        uint8_t network[3 * 3 * 4 + 2];
        size_t through_b = encode_utf8(kind, data, s + 1, b, network);
        size_t through_c = through_b + encode_utf8(kind, data, b, c, network + through_b);
        if (add_joined_token(keys, "received:ip:", 12, network, through_c)
                || add_joined_token(keys, "received:ip:", 12, network, through_b))
            return -1;
        s = d;  /* the next match starts after "]" */
    }
    return 0;
}

static PyObject *received_keys(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *lowered, *text, *out;
    if (!PyArg_ParseTuple(args, "UUO!", &lowered, &text, &PySet_Type, &out))
        return NULL;
    KeySet keys;
    keys_init(&keys);
    int failed = received_into(&keys, lowered, text) || keys_into_set(&keys, out);
    keys_free(&keys);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}


/* ------------------------------------------------------------------------------- URLs */

/* Second-level labels under which registrations happen one level deeper (co.uk, com.au);
   the same list as urls.py's _SHORT_SLDS. */
static const char *const SHORT_SLDS[] = {"co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "go"};

static int is_short_sld(const char *label, size_t length) {
    for (size_t i = 0; i < sizeof(SHORT_SLDS) / sizeof(SHORT_SLDS[0]); i++)
        if (strlen(SHORT_SLDS[i]) == length && memcmp(SHORT_SLDS[i], label, length) == 0)
            return 1;
    return 0;
}

static inline int is_ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static inline int is_ascii_digit(char c) { return c >= '0' && c <= '9'; }
static inline int is_ascii_alnum(char c) { return is_ascii_alpha(c) || is_ascii_digit(c); }
static inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }

/* ^\d{1,3}(?:\.\d{1,3}){3}$ */
static int is_ip_host(const char *host, size_t length) {
    size_t i = 0;
    for (int octet = 0; octet < 4; octet++) {
        if (octet > 0) {
            if (i >= length || host[i] != '.')
                return 0;
            i++;
        }
        size_t start = i;
        while (i < length && i - start < 3 && is_ascii_digit(host[i]))
            i++;
        if (i == start)
            return 0;
    }
    return i == length;
}

static int add_text_token(KeySet *keys, const char *head, const char *part, size_t part_length) {
    return add_joined_token(keys, head, strlen(head), (const uint8_t *)part, part_length);
}

/* One ASCII URL's tokens, as urls.py's _tokens_of_url makes them, into the key set. */
static int ascii_url_keys(KeySet *keys, const char *url, size_t n) {
    size_t i = 0;
    while (i < n && Py_UNICODE_ISSPACE((Py_UCS4)(unsigned char)url[i]))
        i++;
    /* (?:([a-zA-Z][a-zA-Z0-9+.-]{0,15}):)? */
    char scheme[17];
    size_t scheme_length = 0;
    if (i < n && is_ascii_alpha(url[i])) {
        size_t j = i + 1;
        while (j < n && j - i < 16 && (is_ascii_alnum(url[j]) || url[j] == '+' || url[j] == '.' || url[j] == '-'))
            j++;
        if (j < n && url[j] == ':') {
            scheme_length = j - i;
            for (size_t k = 0; k < scheme_length; k++)
                scheme[k] = ascii_lower(url[i + k]);
            i = j + 1;
        }
    }
    scheme[scheme_length] = '\0';
    if (i + 1 < n && url[i] == '/' && url[i + 1] == '/')
        i += 2;
    size_t authority = i;  /* [^/?#\s]* */
    while (i < n && url[i] != '/' && url[i] != '?' && url[i] != '#'
           && !Py_UNICODE_ISSPACE((Py_UCS4)(unsigned char)url[i]))
        i++;
    size_t authority_end = i, rest = i;  /* [^\s]* */
    while (i < n && !Py_UNICODE_ISSPACE((Py_UCS4)(unsigned char)url[i]))
        i++;
    size_t rest_end = i;

    if (strcmp(scheme, "mailto") == 0)
        return add_text_token(keys, "url:mailto", "", 0);
    if (strcmp(scheme, "cid") == 0 || strcmp(scheme, "javascript") == 0 || strcmp(scheme, "data") == 0)
        return add_text_token(keys, "url:scheme:", scheme, scheme_length);

    /* authority.rpartition("@")[2].split(":", 1)[0].lower().strip(".") */
    size_t host = authority, has_at = 0;
    for (size_t k = authority; k < authority_end; k++)
        if (url[k] == '@') {
            host = k + 1;
            has_at = 1;
        }
    size_t host_end = host;
    while (host_end < authority_end && url[host_end] != ':')
        host_end++;
    while (host < host_end && url[host] == '.')
        host++;
    while (host_end > host && url[host_end - 1] == '.')
        host_end--;
    if (has_at && add_text_token(keys, "url:userinfo", "", 0))
        return -1;
    size_t length = host_end - host;
    if (length == 0)
        return 0;
    if (add_text_token(keys, "url:scheme:", scheme_length ? scheme : "none", scheme_length ? scheme_length : 4))
        return -1;
    char *lowered = PyMem_Malloc(length + 1);
    if (lowered == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t k = 0; k < length; k++)
        lowered[k] = ascii_lower(url[host + k]);
    int failed;
    if (is_ip_host(lowered, length)) {
        size_t dots = 0, network = 0;  /* ".".join(host.split(".")[:3]) */
        while (network < length && !(lowered[network] == '.' && ++dots == 3))
            network++;
        failed = add_text_token(keys, "url:ip", "", 0)
                 || add_text_token(keys, "url:ip:", lowered, network);
    } else {
        /* registrable_domain: the last two labels, or three under a short second level.
           starts[2], [1], [0]: where the last, second-last and third-last labels start
           (0 for a label the host does not have) */
        size_t starts[3] = {0, 0, 0}, labels = 1;
        for (size_t k = 0; k < length; k++)
            if (lowered[k] == '.') {
                starts[0] = starts[1];
                starts[1] = starts[2];
                starts[2] = k + 1;
                labels++;
            }
        size_t domain = starts[1];
        if (labels >= 3 && length - starts[2] == 2
                && is_short_sld(lowered + starts[1], starts[2] - 1 - starts[1]))
            domain = starts[0];
        failed = add_text_token(keys, "url:host:", lowered, length)
                 || add_text_token(keys, "url:domain:", lowered + domain, length - domain);
    }
    PyMem_Free(lowered);
    if (failed)
        return -1;
    /* [A-Za-z0-9]{3,20} in rest.lower()[:200] */
    size_t end = rest_end - rest > 200 ? rest + 200 : rest_end;
    for (size_t k = rest; k < end;) {
        if (!is_ascii_alnum(url[k])) {
            k++;
            continue;
        }
        size_t run = k;
        while (run < end && run - k < 20 && is_ascii_alnum(url[run]))
            run++;
        if (run - k >= 3) {
            char word[20];
            for (size_t w = 0; w < run - k; w++)
                word[w] = ascii_lower(url[k + w]);
            if (add_text_token(keys, "url:path:", word, run - k))
                return -1;
        }
        k = run;
    }
    if (memchr(url + rest, '%', rest_end - rest) != NULL && add_text_token(keys, "url:escaped", "", 0))
        return -1;
    return 0;
}

PyDoc_STRVAR(url_keys_doc,
"url_keys(urls, out) -> list\n\n"
"Add to the set `out` the keys of the tokens of each ASCII URL in the iterable `urls`\n"
"(scheme, host, registrable domain, path words, userinfo and escapes, as\n"
"urls._tokens_of_url makes them). Returns the URLs that are not ASCII, for Python.");

static PyObject *url_keys(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *urls, *out;
    if (!PyArg_ParseTuple(args, "OO!", &urls, &PySet_Type, &out))
        return NULL;
    PyObject *iterator = PyObject_GetIter(urls);
    if (iterator == NULL)
        return NULL;
    PyObject *others = PyList_New(0);
    if (others == NULL) {
        Py_DECREF(iterator);
        return NULL;
    }
    KeySet keys;
    keys_init(&keys);
    PyObject *url;
    while ((url = PyIter_Next(iterator)) != NULL) {
        int failed;
        if (!PyUnicode_Check(url)) {
            PyErr_SetString(PyExc_TypeError, "urls must be str");
            failed = -1;
        } else if (PyUnicode_IS_ASCII(url)) {
            failed = ascii_url_keys(&keys, (const char *)PyUnicode_1BYTE_DATA(url),
                                    (size_t)PyUnicode_GET_LENGTH(url));
        } else {
            failed = PyList_Append(others, url);
        }
        Py_DECREF(url);
        if (failed)
            goto fail;
    }
    if (PyErr_Occurred() || keys_into_set(&keys, out))
        goto fail;
    Py_DECREF(iterator);
    keys_free(&keys);
    return others;

fail:
    Py_DECREF(iterator);
    Py_DECREF(others);
    keys_free(&keys);
    return NULL;
}

/* ---------------------------------------------------------------------------- headers */

/* What a selected header gives, as headers.py's _C_PLANS tells it: its kind and flags. */
enum { HEADER_WORDS = 0, HEADER_SUBJECT = 1, HEADER_RECEIVED = 2, HEADER_MESSAGE_ID = 3 };
enum { HEADER_ADDRESS = 1, HEADER_WHOLE_VALUE = 2 };
#define MAX_HEADER_PREFIX 64   /* bytes of a plan's prefix ("content-transfer-encoding:" is 26) */
#define MAX_HEADER_TOKEN 1024  /* the longest token made here: a prefix and an address, < 800 */

/* \w of an ASCII character */
static inline int is_ascii_word(uint8_t c) { return is_ascii_alnum((char)c) || c == '_'; }
/* str.isspace() of an ASCII character, which is what \s and str.strip() take as space */
static inline int is_ascii_space(uint8_t c) { return Py_UNICODE_ISSPACE(c); }

static int add_bytes_key(KeySet *keys, const uint8_t *bytes, size_t length) {
    uint64_t key;
    return hash_bytes(bytes, length, &key) || keys_add(keys, key);
}

/* head + lower(part) into `buffer` (MAX_HEADER_TOKEN bytes); the length written. */
static size_t join_lowered(uint8_t *buffer, const char *head, size_t head_length,
                           const uint8_t *part, size_t part_length) {
    memcpy(buffer, head, head_length);
    for (size_t i = 0; i < part_length; i++)
        buffer[head_length + i] = (uint8_t)ascii_lower((char)part[i]);
    return head_length + part_length;
}

/* The end of the domain half of text.EMAIL, [\w-]{1,63}(?:\.[\w-]{1,63}){1,8}, matched at
 * `start` of an ASCII value, or -1. The first label must be a whole run followed by "."
 * (no shorter run is followed by one); each further label takes up to 63 characters of
 * its run, and the match may end inside a longer run, as the regex's does. */
static Py_ssize_t email_domain_end(const uint8_t *v, Py_ssize_t n, Py_ssize_t start) {
    Py_ssize_t i = start;
    while (i < n && (is_ascii_word(v[i]) || v[i] == '-'))
        i++;
    if (i == start || i - start > 63 || i >= n || v[i] != '.')
        return -1;
    int labels = 0;
    while (labels < 8 && i < n && v[i] == '.') {
        Py_ssize_t j = i + 1;
        while (j < n && j - (i + 1) < 63 && (is_ascii_word(v[j]) || v[j] == '-'))
            j++;
        if (j == i + 1)
            break;
        i = j;
        labels++;
    }
    return labels ? i : -1;
}

/* headers.py's _address_tokens for an ASCII value: prefix + "addr:" + user@domain and
 * prefix + "domain:" + domain for each text.EMAIL match (re.findall's), lower-cased;
 * prefix + "no-address" when there is none. A match's user part is the run of
 * [\w.+-] before an "@" (its last 64 characters), starting no earlier than where the
 * match before it ended. */
static int address_keys(KeySet *keys, const char *prefix, size_t prefix_length,
                        const uint8_t *v, Py_ssize_t n) {
    uint8_t head[MAX_HEADER_PREFIX + 8], token[MAX_HEADER_TOKEN];
    int found = 0;
    Py_ssize_t pos = 0;
    const uint8_t *at;
    while (pos < n && (at = memchr(v + pos, '@', (size_t)(n - pos))) != NULL) {
        Py_ssize_t a = at - v, user = a;
        while (user > pos && (is_ascii_word(v[user - 1]) || v[user - 1] == '.' || v[user - 1] == '+'
                              || v[user - 1] == '-'))
            user--;
        if (a - user > 64)
            user = a - 64;
        Py_ssize_t end = user < a ? email_domain_end(v, n, a + 1) : -1;
        if (end < 0) {
            pos = a + 1;
            continue;
        }
        memcpy(head, prefix, prefix_length);
        memcpy(head + prefix_length, "addr:", 5);
        /* user@domain is one run of the value, lower-cased */
        size_t length = join_lowered(token, (const char *)head, prefix_length + 5, v + user, (size_t)(end - user));
        if (add_bytes_key(keys, token, length))
            return -1;
        memcpy(head + prefix_length, "domain:", 7);
        length = join_lowered(token, (const char *)head, prefix_length + 7, v + a + 1, (size_t)(end - a - 1));
        if (add_bytes_key(keys, token, length))
            return -1;
        found = 1;
        pos = end;
    }
    if (found)
        return 0;
    memcpy(token, prefix, prefix_length);
    memcpy(token + prefix_length, "no-address", 10);
    return add_bytes_key(keys, token, prefix_length + 10);
}

/* headers.py's _whole_value_token for an ASCII value: prefix + "=" + the value stripped,
 * lower-cased, each run of white space one " ", cut to 80 characters. */
static int whole_value_key(KeySet *keys, const char *prefix, size_t prefix_length,
                           const uint8_t *v, Py_ssize_t n) {
    uint8_t token[MAX_HEADER_PREFIX + 1 + 80];
    Py_ssize_t start = 0, end = n;
    while (start < end && is_ascii_space(v[start]))
        start++;
    while (end > start && is_ascii_space(v[end - 1]))
        end--;
    memcpy(token, prefix, prefix_length);
    token[prefix_length] = '=';
    size_t length = prefix_length + 1, written = 0;
    for (Py_ssize_t i = start; i < end && written < 80; written++) {
        if (is_ascii_space(v[i])) {
            token[length++] = ' ';
            while (i < end && is_ascii_space(v[i]))
                i++;
        } else {
            token[length++] = (uint8_t)ascii_lower((char)v[i++]);
        }
    }
    return add_bytes_key(keys, token, length);
}

/* headers.py's _message_id_tokens for an ASCII value: the domain is what follows the first
 * "@" that has a character other than ">" or white space after it (up to 200 of them). */
static int message_id_keys(KeySet *keys, const uint8_t *v, Py_ssize_t n) {
    static const char head[] = "message-id:@";
    uint8_t token[sizeof(head) - 1 + 200];
    for (Py_ssize_t a = 0; a + 1 < n; a++) {
        if (v[a] != '@' || v[a + 1] == '>' || is_ascii_space(v[a + 1]))
            continue;
        Py_ssize_t end = a + 1;
        while (end < n && end - (a + 1) < 200 && v[end] != '>' && !is_ascii_space(v[end]))
            end++;
        size_t head_length = sizeof(head) - 1;
        size_t length = join_lowered(token, head, head_length, v + a + 1, (size_t)(end - a - 1));
        if (add_bytes_key(keys, token, length))
            return -1;
        /* and its last two labels: ".".join(domain.split(".")[-2:]) */
        size_t dots = 0, from = head_length;
        for (size_t k = length; k > head_length; k--)
            if (token[k - 1] == '.' && ++dots == 2) {
                from = k;
                break;
            }
        if (from == head_length)
            return 0;  /* (the same token) */
        memmove(token + head_length, token + from, length - from);
        return add_bytes_key(keys, token, head_length + length - from);
    }
    static const char none[] = "message-id:no-domain";
    return add_bytes_key(keys, (const uint8_t *)none, sizeof(none) - 1);
}

static int add_literal_key(KeySet *keys, const char *token) {
    return add_bytes_key(keys, (const uint8_t *)token, strlen(token));
}

/* headers.py's _subject_shape, for any str: mostly capitals, "!", three spaces. */
static int subject_shape_keys(KeySet *keys, PyObject *value) {
    int kind = PyUnicode_KIND(value);
    const void *data = PyUnicode_DATA(value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value), letters = 0, upper = 0, spaces = 0;
    int bang = 0, spaced = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (i < 200 && c < 128 && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            letters++;
            upper += c <= 'Z';
        }
        bang |= c == '!';
        spaces = c == ' ' ? spaces + 1 : 0;
        spaced |= spaces >= 3;
    }
    if (letters >= 8 && (double)upper / (double)letters > 0.7 && add_literal_key(keys, "subject:shape:upper"))
        return -1;
    if (bang && add_literal_key(keys, "subject:shape:bang"))
        return -1;
    if (spaced && add_literal_key(keys, "subject:shape:spaced"))
        return -1;
    return 0;
}

/* (plan, value) onto `leftovers`, for the Python helpers; -1 with an exception set. */
static int leave_to_python(PyObject *leftovers, PyObject *plan, PyObject *value) {
    PyObject *left = PyTuple_Pack(2, plan, value);
    int failed = left == NULL || PyList_Append(leftovers, left);
    Py_XDECREF(left);
    return failed ? -1 : 0;
}

/* One header by its plan; -1 with an exception set. A value that is not ASCII has its
 * address, whole-value or Message-ID tokens made by the Python helpers (Unicode's \w,
 * white space and lower-casing stay Python's): it goes on `leftovers`. */
static int header_into(KeySet *keys, PyObject *plan, PyObject *value, Py_ssize_t min_word,
                       Py_ssize_t max_word, int plain, PyObject *received, PyObject *leftovers,
                       int *has_subject) {
    /* (read directly: PyArg_ParseTuple on each plan and header was a tenth of the call) */
    if (!PyTuple_Check(plan) || PyTuple_GET_SIZE(plan) != 4 || !PyLong_Check(PyTuple_GET_ITEM(plan, 0))
            || !PyLong_Check(PyTuple_GET_ITEM(plan, 1)) || !PyBytes_Check(PyTuple_GET_ITEM(plan, 2))
            || PyBytes_GET_SIZE(PyTuple_GET_ITEM(plan, 2)) > MAX_HEADER_PREFIX) {
        PyErr_SetString(PyExc_ValueError, "header_keys(): a plan is (kind, flags, prefix of at most 64 bytes, prefix)");
        return -1;
    }
    long code = PyLong_AsLong(PyTuple_GET_ITEM(plan, 0)), flags = PyLong_AsLong(PyTuple_GET_ITEM(plan, 1));
    if ((code == -1 || flags == -1) && PyErr_Occurred())
        return -1;
    const char *prefix = PyBytes_AS_STRING(PyTuple_GET_ITEM(plan, 2));
    Py_ssize_t prefix_length = PyBytes_GET_SIZE(PyTuple_GET_ITEM(plan, 2));
    if (code == HEADER_RECEIVED)
        return PyList_Append(received, value);
    int ascii = PyUnicode_IS_ASCII(value);
    const uint8_t *v = ascii ? PyUnicode_1BYTE_DATA(value) : NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    if (code == HEADER_MESSAGE_ID) {
        if (ascii)
            return message_id_keys(keys, v, n);
        return leave_to_python(leftovers, plan, value);
    }
    PyObject *lowered = PyObject_CallMethod(value, "lower", NULL);
    if (lowered == NULL)
        return -1;
    int failed = words_into(keys, lowered, prefix, prefix_length, min_word, max_word, plain, NULL, NULL);
    Py_DECREF(lowered);
    if (failed)
        return -1;
    if (flags & (HEADER_ADDRESS | HEADER_WHOLE_VALUE)) {
        if (!ascii) {
            failed = leave_to_python(leftovers, plan, value);
        } else if (flags & HEADER_ADDRESS) {
            failed = address_keys(keys, prefix, (size_t)prefix_length, v, n);
        } else {
            failed = whole_value_key(keys, prefix, (size_t)prefix_length, v, n);
        }
        if (failed)
            return -1;
    }
    if (code == HEADER_SUBJECT) {
        *has_subject = 1;
        return subject_shape_keys(keys, value);
    }
    return 0;
}

PyDoc_STRVAR(header_keys_doc,
"header_keys(headers, plans, min_word, max_word, out, plain=False) -> leftovers\n\n"
"Add to the set `out` the keys of the header tokens headers.emit_header_tokens makes of\n"
"the (name, value) list `headers` with fold_case and the selected headers: `plans` maps\n"
"each selected name to (kind, flags, prefix as UTF-8, prefix). Returns the (plan, value)\n"
"pairs whose address, whole-value or Message-ID tokens are left to the Python helpers\n"
"(their values are not ASCII).");

static PyObject *header_keys(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *headers, *plans, *out;
    Py_ssize_t min_word, max_word;
    int plain = 0, has_subject = 0;
    if (!PyArg_ParseTuple(args, "O!O!nnO!|p", &PyList_Type, &headers, &PyDict_Type, &plans,
                          &min_word, &max_word, &PySet_Type, &out, &plain))
        return NULL;
    KeySet keys;
    keys_init(&keys);
    PyObject *received = PyList_New(0), *leftovers = PyList_New(0);
    if (received == NULL || leftovers == NULL)
        goto fail;
    for (Py_ssize_t h = 0; h < PyList_GET_SIZE(headers); h++) {
        PyObject *header = PyList_GET_ITEM(headers, h);
        if (!PyTuple_Check(header) || PyTuple_GET_SIZE(header) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(header, 0))
                || !PyUnicode_Check(PyTuple_GET_ITEM(header, 1))) {
            PyErr_SetString(PyExc_TypeError, "header_keys(): headers must be (name, value) tuples of str");
            goto fail;
        }
        PyObject *name = PyTuple_GET_ITEM(header, 0), *value = PyTuple_GET_ITEM(header, 1);
        PyObject *plan = PyDict_GetItemWithError(plans, name);
        if (plan == NULL) {
            if (PyErr_Occurred())
                goto fail;
            continue;  /* a header not read */
        }
        if (header_into(&keys, plan, value, min_word, max_word, plain, received, leftovers, &has_subject))
            goto fail;
    }
    if (PyList_GET_SIZE(received) > 0) {
        PyObject *space = PyUnicode_FromString(" ");
        PyObject *joined = space == NULL ? NULL : PyUnicode_Join(space, received);
        Py_XDECREF(space);
        PyObject *lowered = joined == NULL ? NULL : PyObject_CallMethod(joined, "lower", NULL);
        int failed = lowered == NULL || received_into(&keys, lowered, joined);
        Py_XDECREF(joined);
        Py_XDECREF(lowered);
        if (failed)
            goto fail;
    }
    if (!has_subject && add_literal_key(&keys, "header:no-subject"))
        goto fail;
    if (keys_into_set(&keys, out))
        goto fail;
    keys_free(&keys);
    Py_DECREF(received);
    return leftovers;

fail:
    keys_free(&keys);
    Py_XDECREF(received);
    Py_XDECREF(leftovers);
    return NULL;
}


/* ------------------------------------------------------------- the byte model's buckets */

/* The reference is spamkit/bytemodel.py: byte_sample (what the model reads of a message),
 * grams (the distinct buckets of its 4-byte windows) and ByteModel.log_odds and learn on
 * them (tests/engine/test_bytemodel.py compares them). */

#define HEAD_SCAN 16384

static int is_filter_header(const uint8_t *line, size_t length) {
    /* Does the line start, in any case, with a header name a spam filter writes? */
    static const char *const names[] = {"x-spam", "x-bogosity", "x-dspam", "x-rspamd", "x-spamkit"};
    for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
        size_t k = strlen(names[n]);
        if (length < k)
            continue;
        size_t i = 0;
        while (i < k && (uint8_t)(line[i] | ((line[i] >= 'A' && line[i] <= 'Z') ? 0x20 : 0)) == (uint8_t)names[n][i])
            i++;
        if (i == k)
            return 1;
    }
    return 0;
}

static size_t lf_into(const uint8_t *raw, size_t length, uint8_t *out) {
    /* raw with every run of CRs before an LF dropped (a lone CR stays); returns its length */
    size_t written = 0;
    for (size_t i = 0; i < length;) {
        const uint8_t *cr = memchr(raw + i, '\r', length - i);  /* copy up to the next CR whole */
        size_t plain = cr == NULL ? length - i : (size_t)(cr - (raw + i));
        memcpy(out + written, raw + i, plain);
        written += plain;
        i += plain;
        if (i >= length)
            break;
        if (raw[i] == '\r') {
            size_t j = i;
            while (j < length && raw[j] == '\r')
                j++;
            if (j < length && raw[j] == '\n') {
                i = j;
                continue;
            }
            while (i < j)
                out[written++] = raw[i++];
            continue;
        }
        out[written++] = raw[i++];
    }
    return written;
}

static size_t header_part_end(const uint8_t *text, size_t length) {
    /* Where the header part of text ends: after the first "\n\n"'s first \n; 0 for a
     * blank first line (no headers); `length` when no blank line ends it within text. */
    if (length > 0 && text[0] == '\n')
        return 0;
    for (const uint8_t *at = text; (size_t)(at - text) + 1 < length;) {
        const uint8_t *newline = memchr(at, '\n', length - 1 - (size_t)(at - text));
        if (newline == NULL)
            break;
        if (newline[1] == '\n')
            return (size_t)(newline - text) + 1;
        at = newline + 1;
    }
    return length;
}

static size_t cleaned_into(const uint8_t *raw, size_t raw_length, uint8_t *out, size_t limit) {
    /* bytemodel._cleaned(raw)[:limit] into out: the first HEAD_SCAN bytes, line ends as
     * LF, other filters' headers taken out; returns its length, (size_t)-1 out of memory. */
    size_t scan = raw_length < HEAD_SCAN ? raw_length : HEAD_SCAN;
    uint8_t *head = (uint8_t *)malloc(scan ? scan : 1);
    if (head == NULL)
        return (size_t)-1;
    size_t length = lf_into(raw, scan, head);
    size_t header_end = header_part_end(head, length);
    size_t written = 0;
    size_t at = 0;
    while (at < header_end && written < limit) {
        const uint8_t *newline = memchr(head + at, '\n', header_end - at);
        size_t line_end = newline ? (size_t)(newline - head) + 1 : header_end;
        if (newline != NULL && is_filter_header(head + at, line_end - at)) {
            at = line_end;  /* the line, then its continuation lines, each ending in \n */
            while (at < header_end && (head[at] == ' ' || head[at] == '\t')) {
                const uint8_t *next = memchr(head + at, '\n', header_end - at);
                if (next == NULL)
                    break;
                at = (size_t)(next - head) + 1;
            }
            continue;
        }
        size_t take = line_end - at;
        if (take > limit - written)
            take = limit - written;
        memcpy(out + written, head + at, take);
        written += take;
        at = line_end;
    }
    if (written < limit && header_end < length) {
        size_t take = length - header_end;
        if (take > limit - written)
            take = limit - written;
        memcpy(out + written, head + header_end, take);
        written += take;
    }
    free(head);
    return written;
}

typedef struct {
    size_t head;  /* bytes read from the start of the cleaned message */
    size_t tail;  /* and from its end (0: none) */
    int fold;     /* ASCII letters read in lower case */
} Reading;

static size_t sample_into(const uint8_t *raw, size_t raw_length, const Reading *reading, uint8_t *out) {
    /* bytemodel.python_byte_sample(raw, reading) into out (head + tail bytes at most);
     * returns its length, (size_t)-1 when memory runs out. */
    size_t room = reading->head + reading->tail;
    size_t length;
    if (reading->tail == 0) {
        length = cleaned_into(raw, raw_length, out, reading->head);
    } else {
        uint8_t *whole = (uint8_t *)malloc(HEAD_SCAN);
        if (whole == NULL)
            return (size_t)-1;
        size_t cleaned = cleaned_into(raw, raw_length, whole, HEAD_SCAN);
        if (cleaned == (size_t)-1) {
            free(whole);
            return (size_t)-1;
        }
        uint8_t *ends = whole;  /* the head and the tail, joined, then cleaned again */
        size_t joined = cleaned;
        size_t join_at = 0;  /* where the tail starts in the joined text */
        if (raw_length > HEAD_SCAN) {  /* the tail from the last 2 * tail bytes, as LF */
            size_t span = 2 * reading->tail < raw_length ? 2 * reading->tail : raw_length;
            uint8_t *tail = (uint8_t *)malloc(span);
            if (tail == NULL) {
                free(whole);
                return (size_t)-1;
            }
            size_t tail_length = lf_into(raw + raw_length - span, span, tail);
            size_t take = tail_length < reading->tail ? tail_length : reading->tail;
            joined = join_at = cleaned < reading->head ? cleaned : reading->head;
            memcpy(whole + joined, tail + tail_length - take, take);
            joined += take;
            free(tail);
        } else if (cleaned > room) {
            memmove(whole + reading->head, whole + cleaned - reading->tail, reading->tail);
            join_at = reading->head;
            joined = room;
        } else {
            ends = NULL;  /* read whole: already clean */
        }
        size_t kept = ends == NULL ? cleaned : joined;
        size_t head_part = kept < reading->head ? kept : reading->head;
        /* a CR ending the head and an LF starting the tail join into a line end */
        int line_end_at_join = ends != NULL && join_at > 0 && join_at < joined
                               && whole[join_at - 1] == '\r' && whole[join_at] == '\n';
        if (ends == NULL || (header_part_end(whole, head_part) < head_part && !line_end_at_join)) {
            memcpy(out, whole, kept);  /* (cleaning it again would change nothing) */
            length = kept;
        } else {  /* the head cut the headers (the tail's first lines are headers now), or
                   * its last CR meets the tail's first LF */
            length = cleaned_into(ends, joined, out, room);
        }
        free(whole);
    }
    if (length != (size_t)-1 && reading->fold) {
        for (size_t i = 0; i < length; i++)  /* branchless, so the compiler vectorises it */
            out[i] = (uint8_t)(out[i] + ((uint8_t)(out[i] - 'A') < 26u ? 0x20 : 0));
    }
    return length;
}

typedef struct {
    uint32_t *buckets;  /* the distinct buckets, in the order their first window came */
    size_t count;
} WindowSet;

/* Which message's windows last hit each bucket: one byte a bucket holding that message's
 * stamp. Every message gets a new stamp, so nothing needs clearing between messages (only
 * every 255th, when the stamps wrap): a bitmap cleared for each message cost an eighth of
 * a step. One table for every call, as the GIL serialises them. */
static uint8_t *hit_by = NULL;
static size_t hit_size = 0;
static uint8_t hit_stamp = 0;

static int next_stamp(int bits, uint8_t *stamp) {
    /* A stamp no bucket holds, for a table of 2^bits buckets; -1 with MemoryError set. */
    size_t size = (size_t)1 << bits;
    if (size > hit_size) {
        free(hit_by);
        hit_by = (uint8_t *)calloc(size, 1);
        hit_size = hit_by == NULL ? 0 : size;
        hit_stamp = 0;
        if (hit_by == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (++hit_stamp == 0) {
        memset(hit_by, 0, hit_size);
        hit_stamp = 1;
    }
    *stamp = hit_stamp;
    return 0;
}

static int windows_into(const uint8_t *data, size_t length, int bits, uint32_t *buckets, size_t *count) {
    /* The distinct buckets of the 4-byte windows of data (padded with NULs to 4), written
     * to `buckets` (room for max(length, 4) - 3) in the order their first window came;
     * -1 with MemoryError set. Each window is read big-endian, multiplied by 2654435761
     * modulo 2^32 and shifted right by 32 - bits. */
    uint8_t stamp;
    if (next_stamp(bits, &stamp) < 0)
        return -1;
    uint8_t padded[4] = {0, 0, 0, 0};
    if (length < 4) {
        if (length)
            memcpy(padded, data, length);
        data = padded;
        length = 4;
    }
    unsigned shift = 32u - (unsigned)bits;
    uint32_t window = ((uint32_t)data[0] << 16) | ((uint32_t)data[1] << 8) | data[2];
    size_t distinct = 0;
    for (size_t i = 3; i < length; i++) {  /* no branch: whether a bucket is new is random */
        window = (window << 8) | data[i];
        uint32_t bucket = (uint32_t)(window * 2654435761u) >> shift;
        buckets[distinct] = bucket;  /* kept only if new: the count moves past it */
        distinct += hit_by[bucket] != stamp;
        hit_by[bucket] = stamp;
    }
    *count = distinct;
    return 0;
}

static void window_set_free(WindowSet *set) {
    free(set->buckets);
}

static int window_set(const uint8_t *data, size_t length, int bits, WindowSet *set) {
    /* windows_into, its array allocated; -1 with MemoryError set when memory runs out. */
    set->count = 0;
    set->buckets = (uint32_t *)malloc((length < 4 ? 1 : length - 3) * sizeof(uint32_t));
    if (set->buckets == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (windows_into(data, length, bits, set->buckets, &set->count) < 0) {
        window_set_free(set);
        return -1;
    }
    return 0;
}

static int reading_of(Py_ssize_t head, Py_ssize_t tail, int fold, Reading *reading) {
    if (head < 0 || tail < 0 || head > HEAD_SCAN || tail > HEAD_SCAN - head) {  /* (no overflow) */
        PyErr_SetString(PyExc_ValueError, "head and tail must be from 0 to 16384 bytes together");
        return -1;
    }
    reading->head = (size_t)head;
    reading->tail = (size_t)tail;
    reading->fold = fold;
    return 0;
}

static uint8_t *sample_of(const Py_buffer *raw, const Reading *reading, size_t *length) {
    /* The message's sample, malloc'd (the caller frees it); NULL with MemoryError set. */
    uint8_t *sample = (uint8_t *)malloc(reading->head + reading->tail + 1);
    if (sample != NULL) {
        *length = sample_into((const uint8_t *)raw->buf, (size_t)raw->len, reading, sample);
        if (*length != (size_t)-1)
            return sample;
        free(sample);
    }
    PyErr_NoMemory();
    return NULL;
}

PyDoc_STRVAR(message_sample_doc,
"message_sample(raw, head, tail, fold) -> bytes\n\n"
"What the byte model reads of a message (bytemodel.byte_sample with that reading).");

static PyObject *message_sample(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer raw;
    Py_ssize_t head, tail;
    int fold;
    Reading reading;
    if (!PyArg_ParseTuple(args, "y*nnp", &raw, &head, &tail, &fold))
        return NULL;
    PyObject *out = NULL;
    size_t length = 0;
    uint8_t *sample = reading_of(head, tail, fold, &reading) < 0 ? NULL : sample_of(&raw, &reading, &length);
    if (sample != NULL)
        out = PyBytes_FromStringAndSize((const char *)sample, (Py_ssize_t)length);
    free(sample);
    PyBuffer_Release(&raw);
    return out;
}

static int weights_of(PyObject *object, int writable, Py_buffer *view, int *bits) {
    /* The model's weights: a C-contiguous float32 buffer of 2^bits items, 6 <= bits <= 24. */
    if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char *format = view->format ? view->format : "B";
    if (format[0] == '<' || format[0] == '=' || format[0] == '@')
        format++;
    Py_ssize_t items = view->itemsize ? view->len / view->itemsize : 0;
    *bits = 0;
    while (*bits < 25 && ((Py_ssize_t)1 << *bits) < items)
        (*bits)++;
    if (view->itemsize != 4 || strcmp(format, "f") != 0 || ((Py_ssize_t)1 << *bits) != items
            || *bits < 6 || *bits > 24) {
        PyErr_SetString(PyExc_ValueError, "weights must be 2^6 to 2^24 float32 values");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static double sum_of(const float *weights, const WindowSet *set) {
    double z = 0.0;
    for (size_t k = 0; k < set->count; k++)
        z += (double)weights[set->buckets[k]];
    return z;
}

static float step_of(float *weights, const WindowSet *set, double target, double rate, double thick) {
    /* One online step on the set's buckets (byte_step's doc); the float32 step, 0 if none. */
    double z = sum_of(weights, set);
    z = z > 500.0 ? 500.0 : (z < -500.0 ? -500.0 : z);
    double error = target - 1.0 / (1.0 + exp(-z));
    if (fabs(error) <= thick)
        return 0.0f;
    float delta = (float)(rate * error);
    for (size_t k = 0; k < set->count; k++)
        weights[set->buckets[k]] += delta;
    return delta;
}

static int model_windows(const Py_buffer *raw, PyObject *weights, Py_ssize_t head, Py_ssize_t tail,
                         int fold, int writable, Py_buffer *view, WindowSet *set) {
    /* The weights' buffer (released by the caller on success) and the distinct windows of
     * the message's sample; -1 with an exception set, nothing held. */
    int bits;
    Reading reading;
    if (reading_of(head, tail, fold, &reading) < 0 || weights_of(weights, writable, view, &bits) < 0)
        return -1;
    size_t length = 0;
    uint8_t *sample = sample_of(raw, &reading, &length);
    int status = sample == NULL ? -1 : window_set(sample, length, bits, set);
    free(sample);
    if (status < 0)
        PyBuffer_Release(view);
    return status;
}

PyDoc_STRVAR(byte_log_odds_doc,
"byte_log_odds(raw, weights, head, tail, fold) -> float\n\n"
"The sum of the float32 weights of the distinct buckets of the message's sample (what\n"
"bytemodel.message_buckets gives, the bucket bits being log2 of the number of weights): the byte\n"
"model's log-odds, without making the buckets (bytemodel.ByteModel.log_odds).");

static PyObject *byte_log_odds(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer raw, view;
    PyObject *weights, *out = NULL;
    Py_ssize_t head, tail;
    int fold;
    WindowSet set;
    if (!PyArg_ParseTuple(args, "y*Onnp", &raw, &weights, &head, &tail, &fold))
        return NULL;
    if (model_windows(&raw, weights, head, tail, fold, 0, &view, &set) == 0) {
        out = PyFloat_FromDouble(sum_of((const float *)view.buf, &set));
        window_set_free(&set);
        PyBuffer_Release(&view);
    }
    PyBuffer_Release(&raw);
    return out;
}

PyDoc_STRVAR(byte_step_doc,
"byte_step(raw, weights, head, tail, fold, target, rate, thick) -> float\n\n"
"One online step of the byte model (bytemodel.ByteModel.learn) on the message's sample:\n"
"p = logistic(log-odds, clamped to +-500); unless |target - p| <= thick, every distinct\n"
"bucket's weight gains the float32 value of rate * (target - p). Returns that value (the\n"
"step, which `forget` takes back out), 0.0 if the weights did not move.");

static PyObject *byte_step(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer raw, view;
    PyObject *weights, *out = NULL;
    Py_ssize_t head, tail;
    int fold;
    double target, rate, thick;
    WindowSet set;
    if (!PyArg_ParseTuple(args, "y*Onnpddd", &raw, &weights, &head, &tail, &fold, &target, &rate, &thick))
        return NULL;
    if (model_windows(&raw, weights, head, tail, fold, 1, &view, &set) == 0) {
        float delta = step_of((float *)view.buf, &set, target, rate, thick);
        window_set_free(&set);
        PyBuffer_Release(&view);
        out = PyFloat_FromDouble((double)delta);
    }
    PyBuffer_Release(&raw);
    return out;
}

typedef struct {
    PyObject *fast;      /* the samples, as a sequence */
    PyObject **items;
    Py_ssize_t n;
    Py_buffer view;      /* the weights */
    int bits;
    uint32_t *buckets;   /* room for the longest sample's buckets */
} SampleRun;

static int sample_run_open(SampleRun *run, PyObject *samples, const Py_buffer *values, Py_ssize_t value_size,
                           const char *values_error, PyObject *weights) {
    /* What sample_steps and sample_adds share: the samples (bytes, one value of
     * value_size bytes each in `values`), the writable weights and a bucket array; -1 with
     * an exception set and nothing held. */
    run->buckets = NULL;
    run->fast = PySequence_Fast(samples, "samples must be a sequence of bytes");
    if (run->fast == NULL)
        return -1;
    run->n = PySequence_Fast_GET_SIZE(run->fast);
    run->items = PySequence_Fast_ITEMS(run->fast);
    size_t longest = 4;
    for (Py_ssize_t i = 0; i < run->n; i++) {
        if (!PyBytes_Check(run->items[i])) {
            PyErr_SetString(PyExc_TypeError, "samples must be bytes");
            goto fail;
        }
        if ((size_t)PyBytes_GET_SIZE(run->items[i]) > longest)
            longest = (size_t)PyBytes_GET_SIZE(run->items[i]);
    }
    if (values->len != run->n * value_size) {
        PyErr_SetString(PyExc_ValueError, values_error);
        goto fail;
    }
    if (weights_of(weights, 1, &run->view, &run->bits) < 0)
        goto fail;
    run->buckets = (uint32_t *)malloc((longest - 3) * sizeof(uint32_t));
    if (run->buckets != NULL)
        return 0;
    PyErr_NoMemory();
    PyBuffer_Release(&run->view);
fail:
    Py_DECREF(run->fast);
    return -1;
}

static int sample_run_windows(SampleRun *run, Py_ssize_t i, WindowSet *set) {
    /* The distinct buckets of sample i, read as it is, into run->buckets; -1 with MemoryError. */
    set->buckets = run->buckets;
    return windows_into((const uint8_t *)PyBytes_AS_STRING(run->items[i]), (size_t)PyBytes_GET_SIZE(run->items[i]),
                        run->bits, run->buckets, &set->count);
}

static void sample_run_close(SampleRun *run) {
    free(run->buckets);
    PyBuffer_Release(&run->view);
    Py_DECREF(run->fast);
}

PyDoc_STRVAR(sample_steps_doc,
"sample_steps(samples, targets, weights, rate, thick) -> bytes\n\n"
"byte_step on each sample in turn, in the order given, each read as it is (a sample is\n"
"its own sample, so this is byte_step in the model's reading without sampling again);\n"
"targets holds one byte a sample, 1 for spam and 0 for ham. Returns the steps as native\n"
"float32 values, one a sample (`train`'s copies of the model, bytemodel.bagged_steps).");

static PyObject *sample_steps(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *samples, *weights, *out = NULL;
    Py_buffer targets;
    double rate, thick;
    SampleRun run;
    WindowSet set;
    if (!PyArg_ParseTuple(args, "Oy*Odd", &samples, &targets, &weights, &rate, &thick))
        return NULL;
    if (sample_run_open(&run, samples, &targets, 1, "targets must hold one byte a sample", weights) == 0) {
        out = PyBytes_FromStringAndSize(NULL, run.n * (Py_ssize_t)sizeof(float));
        float *steps = out == NULL ? NULL : (float *)PyBytes_AS_STRING(out), *w = (float *)run.view.buf;
        const uint8_t *target = (const uint8_t *)targets.buf;
        for (Py_ssize_t i = 0; out != NULL && i < run.n; i++) {
            if (sample_run_windows(&run, i, &set) < 0)
                Py_CLEAR(out);
            else
                steps[i] = step_of(w, &set, target[i] ? 1.0 : 0.0, rate, thick);
        }
        sample_run_close(&run);
    }
    PyBuffer_Release(&targets);
    return out;
}

PyDoc_STRVAR(sample_adds_doc,
"sample_adds(samples, steps, weights) -> None\n\n"
"Adds each sample's step (steps: native float32 values, one a sample; 0: nothing) to the\n"
"weight of every distinct bucket of the sample, read as it is (as sample_steps reads\n"
"them): `train` gives each batch its messages' steps so, and `forget` takes one back\n"
"with its negative (bytemodel.ByteModel.add_steps, unlearn_message).");

static PyObject *sample_adds(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *samples, *weights, *out = NULL;
    Py_buffer steps;
    SampleRun run;
    WindowSet set;
    if (!PyArg_ParseTuple(args, "Oy*O", &samples, &steps, &weights))
        return NULL;
    if (sample_run_open(&run, samples, &steps, (Py_ssize_t)sizeof(float), "steps must hold one float32 a sample",
                        weights) == 0) {
        float *w = (float *)run.view.buf;
        const float *step = (const float *)steps.buf;
        out = Py_NewRef(Py_None);
        for (Py_ssize_t i = 0; out != NULL && i < run.n; i++) {
            if (step[i] == 0.0f)
                continue;
            if (sample_run_windows(&run, i, &set) < 0) {
                Py_CLEAR(out);
                break;
            }
            for (size_t k = 0; k < set.count; k++)
                w[set.buckets[k]] += step[i];
        }
        sample_run_close(&run);
    }
    PyBuffer_Release(&steps);
    return out;
}

static PyMethodDef methods[] = {
    {"sample_adds", sample_adds, METH_VARARGS, sample_adds_doc},
    {"sample_steps", sample_steps, METH_VARARGS, sample_steps_doc},
    {"byte_log_odds", byte_log_odds, METH_VARARGS, byte_log_odds_doc},
    {"byte_step", byte_step, METH_VARARGS, byte_step_doc},
    {"message_sample", message_sample, METH_VARARGS, message_sample_doc},
    {"hash_words", hash_words, METH_VARARGS, hash_words_doc},
    {"hash_strings", hash_strings, METH_VARARGS, hash_strings_doc},
    {"hash_prefixed_words", hash_prefixed_words, METH_VARARGS, hash_prefixed_words_doc},
    {"received_keys", received_keys, METH_VARARGS, received_keys_doc},
    {"header_keys", header_keys, METH_VARARGS, header_keys_doc},
    {"url_keys", url_keys, METH_VARARGS, url_keys_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "_fast",
    "The tokenizer's word splitting, Received tokens and XXH3-64 hashing in C (same results "
    "as the Python code).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fast(void) {
    PyObject *xxhash = PyImport_ImportModule("xxhash");
    if (xxhash == NULL)
        return NULL;
    reference_hash = PyObject_GetAttrString(xxhash, "xxh3_64_intdigest");
    Py_DECREF(xxhash);
    if (reference_hash == NULL)
        return NULL;
    return PyModule_Create(&module_definition);
}
