/*
 * spamkit.message._scans: the parser's whole-text scans in C.
 *
 * spamkit/message/ parses with regex passes over whole texts; on the corpus the passes
 * below were most of its time (docs/decisions/0009). Each function does what one regex
 * expression does, with the same result to the character (tests/engine/test_fast_scans.py
 * compares them on the corpus and on hypothesis's strings), in one forward scan:
 *
 *   strip_tags(s)       _ANY_TAG.sub(" ", _INLINE_TAG.sub("", s))            (html.py)
 *   tag_names(s)        _TAG_NAME.findall(s)                                 (html.py)
 *   useful_attrs(s)     [(name, double or single or bare) for _USEFUL_ATTR.findall(s)]
 *   useful_attrs(s, original)
 *                       the same, each value taken from `original` (as long as s) at the
 *                       same place: the attributes found on the lower-cased document,
 *                       their values as written                            (html.py)
 *   text_urls(s)        _TEXT_URL.findall(s)                               (__init__.py)
 *   header_fields(s, keep_case)
 *                       the fields of a header block: _FIELD.findall(_FOLD.sub(" ", s)),
 *                       names lower-cased unless keep_case, values right-stripped, and
 *                       the folded block's line count                      (headers.py)
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

/* The patterns `substitute` replaces: _INLINE_TAG by "", _ANY_TAG by " ", _FOLD by " ". */
enum substitution { INLINE_TAGS, ANY_TAGS, FOLD };

/* [^\s<>"'()\[\]{}]: a character a URL in text goes on with. */
static inline int is_url_char(Py_UCS4 c) {
    switch (c) {
    case '<': case '>': case '"': case '\'': case '(': case ')': case '[': case ']': case '{': case '}':
        return 0;
    default:
        return !Py_UNICODE_ISSPACE(c);
    }
}

#define SCAN_CHAR Py_UCS1
#define SCAN(name) name##_ucs1
#include "_scans_kind.h"
#undef SCAN_CHAR
#undef SCAN
#define SCAN_CHAR Py_UCS2
#define SCAN(name) name##_ucs2
#include "_scans_kind.h"
#undef SCAN_CHAR
#undef SCAN
#define SCAN_CHAR Py_UCS4
#define SCAN(name) name##_ucs4
#include "_scans_kind.h"
#undef SCAN_CHAR
#undef SCAN

/* One of the two tag substitutions, on a string of any kind. */
static PyObject *substitute(PyObject *text, enum substitution pattern) {
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    void *out = PyMem_Malloc((size_t)kind * (size_t)(n > 0 ? n : 1));
    if (out == NULL)
        return PyErr_NoMemory();
    Py_ssize_t length;
    if (kind == PyUnicode_1BYTE_KIND)
        length = substitute_ucs1(data, n, out, pattern);
    else if (kind == PyUnicode_2BYTE_KIND)
        length = substitute_ucs2(data, n, out, pattern);
    else
        length = substitute_ucs4(data, n, out, pattern);
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
    PyObject *without_inline = substitute(arg, INLINE_TAGS);
    if (without_inline == NULL)
        return NULL;
    PyObject *result = substitute(without_inline, ANY_TAGS);
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
    if (scan(arg, PyUnicode_DATA(arg), PyUnicode_GET_LENGTH(arg), found) != 0) {
        Py_DECREF(found);  /* an error (set), or the scan's "not for me" (1, none set) */
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
"useful_attrs(lowered, original=None) -> list[tuple[str, str]]\n\n"
"(name, value) of each href, src, action, background, lowsrc, alt and title attribute\n"
"after white space, value quoted with \" or ' or bare, in document order. With\n"
"`original` (the document before lower-casing, as long as `lowered`), each value is\n"
"taken from it: as written.");

static PyObject *useful_attrs(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *lowered, *original = NULL;
    if (!PyArg_ParseTuple(args, "U|U:useful_attrs", &lowered, &original))
        return NULL;
    if (original != NULL && PyUnicode_GET_LENGTH(original) != PyUnicode_GET_LENGTH(lowered)) {
        PyErr_SetString(PyExc_ValueError, "useful_attrs(): original must be as long as lowered");
        return NULL;
    }
    PyObject *found = PyList_New(0);
    if (found == NULL)
        return NULL;
    int kind = PyUnicode_KIND(lowered);
    list_scan scan = kind == PyUnicode_1BYTE_KIND ? useful_attrs_ucs1
                     : kind == PyUnicode_2BYTE_KIND ? useful_attrs_ucs2 : useful_attrs_ucs4;
    /* the scan reads `lowered` and takes each value out of its first argument */
    if (scan(original != NULL ? original : lowered, PyUnicode_DATA(lowered),
             PyUnicode_GET_LENGTH(lowered), found) != 0) {
        Py_DECREF(found);
        return NULL;
    }
    return found;
}

PyDoc_STRVAR(text_urls_doc,
"text_urls(s) -> list[str] | None\n\n"
"URLs written in text: (?:https?://|www\\.) and 2 to 400 characters that are not white\n"
"space or <>\"'()[]{}, found left to right; None when the text has \"HTTP\", \"Http\",\n"
"\"WWW.\" or \"Www.\" (the caller's any-case pattern is for those).");

static PyObject *text_urls(PyObject *self, PyObject *arg) {
    (void)self;
    PyObject *found = scan_into_list(arg, "text_urls", text_urls_ucs1, text_urls_ucs2,
                                     text_urls_ucs4);
    if (found == NULL && PyErr_Occurred() == NULL)
        Py_RETURN_NONE;  /* an upper-case spelling */
    return found;
}

PyDoc_STRVAR(header_fields_doc,
"header_fields(block, keep_case) -> (list[tuple[str, str]], int)\n\n"
"A header block's fields after unfolding (a newline and the blanks after it become one\n"
"space): (name, value) of each line that starts with a field name and a colon, the\n"
"name lower-cased unless keep_case, the value right-stripped; and the unfolded block's\n"
"line count.");

static PyObject *header_fields(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *block;
    int keep_case;
    if (!PyArg_ParseTuple(args, "Up", &block, &keep_case))
        return NULL;
    PyObject *unfolded = substitute(block, FOLD);
    if (unfolded == NULL)
        return NULL;
    PyObject *fields = PyList_New(0);
    if (fields == NULL) {
        Py_DECREF(unfolded);
        return NULL;
    }
    int kind = PyUnicode_KIND(unfolded);
    const void *data = PyUnicode_DATA(unfolded);
    Py_ssize_t n = PyUnicode_GET_LENGTH(unfolded), lines = 0;
    int status = kind == PyUnicode_1BYTE_KIND ? fields_ucs1(unfolded, data, n, keep_case, fields, &lines)
               : kind == PyUnicode_2BYTE_KIND ? fields_ucs2(unfolded, data, n, keep_case, fields, &lines)
               : fields_ucs4(unfolded, data, n, keep_case, fields, &lines);
    Py_DECREF(unfolded);
    if (status < 0) {
        Py_DECREF(fields);
        return NULL;
    }
    return Py_BuildValue("(Nn)", fields, lines);
}

static PyMethodDef methods[] = {
    {"strip_tags", strip_tags, METH_O, strip_tags_doc},
    {"tag_names", tag_names, METH_O, tag_names_doc},
    {"useful_attrs", useful_attrs, METH_VARARGS, useful_attrs_doc},
    {"text_urls", text_urls, METH_O, text_urls_doc},
    {"header_fields", header_fields, METH_VARARGS, header_fields_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "_scans",
    "The parser's tag, attribute, URL and header-field scans in C (same results as its regexes).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__scans(void) {
    for (int index = 0; ATTR_NAMES[index]; index++) {
        ATTR_OBJECTS[index] = PyUnicode_InternFromString(ATTR_NAMES[index]);
        if (ATTR_OBJECTS[index] == NULL)
            return NULL;
    }
    return PyModule_Create(&module_definition);
}
