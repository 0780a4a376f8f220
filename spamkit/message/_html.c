/*
 * spamkit.message._html: the HTML renderer's three whole-document scans in C.
 *
 * spamkit/message/html.py renders most HTML mail with a few regex passes; on the corpus
 * those passes were 60% of the time spent on HTML (docs/decisions/0009). Each function
 * here does what one of those regexes does, with the same result to the character
 * (tests/engine/test_fast_html.py compares them on every HTML part of the corpus and
 * on hypothesis's strings), in one forward scan:
 *
 *   strip_tags(s)     _ANY_TAG.sub(" ", _INLINE_TAG.sub("", s))
 *   tag_names(s)      _TAG_NAME.findall(s)
 *   useful_attrs(s)   [(name, double or single or bare) for the tuples of _USEFUL_ATTR.findall(s)]
 *
 * "\s" and "\b" mean what they mean in Python's re for str patterns: Py_UNICODE_ISSPACE,
 * and a word character being Py_UNICODE_ISALNUM or "_".
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static inline int is_word(Py_UCS4 c) {
    return c == '_' || Py_UNICODE_ISALNUM(c);
}

static inline int is_ascii_letter(Py_UCS4 c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* The inline tags of html.py's _INLINE, which _INLINE_TAG matches in lower or upper case. */
static const char *const INLINE_NAMES[] = {
    "a", "b", "i", "u", "s", "em", "strong", "font", "span", "small", "big", "sub", "sup",
    "tt", "code", "abbr", "del", "ins", "mark", "q", "wbr", NULL,
};

/* Is name[:length] (ASCII) one of INLINE_NAMES, all in lower case or all in upper case? */
static int is_inline_name(const char *name, Py_ssize_t length) {
    if (length < 1 || length > 6)
        return 0;
    char lowered[7];
    int upper = 0, lower = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        char c = name[i];
        if (c >= 'a' && c <= 'z') {
            lower = 1;
            lowered[i] = c;
        } else if (c >= 'A' && c <= 'Z') {
            upper = 1;
            lowered[i] = (char)(c - 'A' + 'a');
        } else {
            return 0;
        }
    }
    if (upper && lower)
        return 0;
    lowered[length] = '\0';
    for (const char *const *known = INLINE_NAMES; *known; known++)
        if (strcmp(*known, lowered) == 0)
            return 1;
    return 0;
}

/* _USEFUL_ATTR's names, in its order; none is a prefix of another. */
static const char *const ATTR_NAMES[] = {
    "href", "src", "action", "background", "lowsrc", "alt", "title", NULL,
};
static const Py_ssize_t ATTR_LENGTHS[] = {4, 3, 6, 10, 6, 3, 5};
static PyObject *ATTR_OBJECTS[7];  /* the names as str, made once */

#define SCAN_CHAR Py_UCS1
#define SCAN(name) name##_ucs1
#include "_html_scan.h"
#undef SCAN_CHAR
#undef SCAN
#define SCAN_CHAR Py_UCS2
#define SCAN(name) name##_ucs2
#include "_html_scan.h"
#undef SCAN_CHAR
#undef SCAN
#define SCAN_CHAR Py_UCS4
#define SCAN(name) name##_ucs4
#include "_html_scan.h"
#undef SCAN_CHAR
#undef SCAN

/* One of the two tag substitutions, on a string of any kind. */
static PyObject *substitute(PyObject *text, int inline_tags) {
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    void *out = PyMem_Malloc((size_t)kind * (size_t)(n > 0 ? n : 1));
    if (out == NULL)
        return PyErr_NoMemory();
    Py_ssize_t length;
    if (kind == PyUnicode_1BYTE_KIND)
        length = substitute_ucs1(data, n, out, inline_tags);
    else if (kind == PyUnicode_2BYTE_KIND)
        length = substitute_ucs2(data, n, out, inline_tags);
    else
        length = substitute_ucs4(data, n, out, inline_tags);
    PyObject *result = PyUnicode_FromKindAndData(kind, out, length);
    PyMem_Free(out);
    return result;
}

PyDoc_STRVAR(strip_tags_doc,
"strip_tags(s) -> str\n\n"
"Inline tags removed (V<b></b>iagra reads as one word), then every other tag a space.");

static PyObject *strip_tags(PyObject *self, PyObject *arg) {
    (void)self;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "strip_tags() takes a str");
        return NULL;
    }
    PyObject *without_inline = substitute(arg, 1);
    if (without_inline == NULL)
        return NULL;
    PyObject *result = substitute(without_inline, 0);
    Py_DECREF(without_inline);
    return result;
}

/* One scan per string kind that appends what it finds to a list. */
typedef int (*list_scan)(PyObject *text, const void *data, Py_ssize_t n, PyObject *found);

static PyObject *scan_into_list(PyObject *arg, const char *name, list_scan ucs1, list_scan ucs2,
                                list_scan ucs4) {
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "%s() takes a str", name);
        return NULL;
    }
    PyObject *found = PyList_New(0);
    if (found == NULL)
        return NULL;
    int kind = PyUnicode_KIND(arg);
    list_scan scan = kind == PyUnicode_1BYTE_KIND ? ucs1 : kind == PyUnicode_2BYTE_KIND ? ucs2 : ucs4;
    if (scan(arg, PyUnicode_DATA(arg), PyUnicode_GET_LENGTH(arg), found) < 0) {
        Py_DECREF(found);
        return NULL;
    }
    return found;
}

PyDoc_STRVAR(tag_names_doc,
"tag_names(lowered) -> list[str]\n\n"
"The names of the tags, in order: <([a-z][a-z0-9]{0,30}) on a lower-cased document.");

static PyObject *tag_names(PyObject *self, PyObject *arg) {
    (void)self;
    return scan_into_list(arg, "tag_names", tag_names_ucs1, tag_names_ucs2, tag_names_ucs4);
}

PyDoc_STRVAR(useful_attrs_doc,
"useful_attrs(lowered) -> list[tuple[str, str]]\n\n"
"(name, value) of each href, src, action, background, lowsrc, alt and title attribute\n"
"after white space, value quoted with \" or ' or bare, in document order.");

static PyObject *useful_attrs(PyObject *self, PyObject *arg) {
    (void)self;
    return scan_into_list(arg, "useful_attrs", useful_attrs_ucs1, useful_attrs_ucs2,
                          useful_attrs_ucs4);
}

static PyMethodDef methods[] = {
    {"strip_tags", strip_tags, METH_O, strip_tags_doc},
    {"tag_names", tag_names, METH_O, tag_names_doc},
    {"useful_attrs", useful_attrs, METH_O, useful_attrs_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "_html",
    "The HTML renderer's tag stripping and attribute scans in C (same results as its regexes).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__html(void) {
    for (int index = 0; ATTR_NAMES[index]; index++) {
        ATTR_OBJECTS[index] = PyUnicode_InternFromString(ATTR_NAMES[index]);
        if (ATTR_OBJECTS[index] == NULL)
            return NULL;
    }
    return PyModule_Create(&module_definition);
}
