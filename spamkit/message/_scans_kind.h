/*
 * The scans of _scans.c for one string kind. _scans.c includes this file three times,
 * with SCAN_CHAR set to Py_UCS1, Py_UCS2 and Py_UCS4 and SCAN(name) naming the copy,
 * so each loop reads its characters straight from the string's own storage.
 */

/* From `from`, the index just past the first ">" if it comes before any "<"; else -1. */
static Py_ssize_t SCAN(tag_end)(const SCAN_CHAR *s, Py_ssize_t from, Py_ssize_t n) {
    for (Py_ssize_t p = from; p < n; p++) {
        if (s[p] == '>')
            return p + 1;
        if (s[p] == '<')
            return -1;
    }
    return -1;
}

/* </?(?:inline names)\b[^<>]*> at i (s[i] == "<"): the match's end, or -1. */
static Py_ssize_t SCAN(match_inline_tag)(const SCAN_CHAR *s, Py_ssize_t i, Py_ssize_t n) {
    Py_ssize_t j = i + 1;
    if (j < n && s[j] == '/')
        j++;
    Py_ssize_t k = j;
    while (k < n && k - j <= 6 && is_word(s[k]))
        k++;
    if (k - j > 6 || (k < n && is_word(s[k])))
        return -1;  /* longer than any inline name */
    /* the name must be the whole run of word characters: "\b" right after it */
    char name[7];
    for (Py_ssize_t m = j; m < k; m++) {
        if (s[m] > 127)
            return -1;
        name[m - j] = (char)s[m];
    }
    if (!is_inline_name(name, k - j))
        return -1;
    return SCAN(tag_end)(s, k, n);
}

/* </?[a-zA-Z!][^<>]*> at i (s[i] == "<"): the match's end, or -1. */
static Py_ssize_t SCAN(match_any_tag)(const SCAN_CHAR *s, Py_ssize_t i, Py_ssize_t n) {
    Py_ssize_t j = i + 1;
    if (j < n && s[j] == '/')
        j++;
    if (j >= n || !(is_ascii_letter(s[j]) || s[j] == '!'))
        return -1;
    return SCAN(tag_end)(s, j + 1, n);
}

/* re.sub of one of the patterns of `enum substitution` over s into out (room for n);
   out's length. */
static Py_ssize_t SCAN(substitute)(const SCAN_CHAR *s, Py_ssize_t n, SCAN_CHAR *out,
                                   enum substitution pattern) {
    Py_ssize_t length = 0;
    Py_ssize_t i = 0;
    while (i < n) {
        if (pattern == FOLD) {  /* \n[ \t]+ -> one space */
            if (s[i] == '\n' && i + 1 < n && (s[i + 1] == ' ' || s[i + 1] == '\t')) {
                out[length++] = ' ';
                i++;
                while (i < n && (s[i] == ' ' || s[i] == '\t'))
                    i++;
                continue;
            }
        } else if (s[i] == '<') {
            Py_ssize_t end = pattern == INLINE_TAGS ? SCAN(match_inline_tag)(s, i, n)
                                                    : SCAN(match_any_tag)(s, i, n);
            if (end > 0) {
                if (pattern == ANY_TAGS)
                    out[length++] = ' ';
                i = end;
                continue;
            }
        }
        out[length++] = s[i++];
    }
    return length;
}

/* Appends the tag names of the text to names; -1 on error. */
static int SCAN(tag_names)(PyObject *text, const void *data, Py_ssize_t n, PyObject *names) {
    const SCAN_CHAR *s = data;
    for (Py_ssize_t i = 0; i + 1 < n; i++) {
        if (s[i] != '<' || s[i + 1] < 'a' || s[i + 1] > 'z')
            continue;
        Py_ssize_t end = i + 2;
        while (end < n && end - (i + 1) < 31 &&
               ((s[end] >= 'a' && s[end] <= 'z') || (s[end] >= '0' && s[end] <= '9')))
            end++;
        PyObject *name = PyUnicode_Substring(text, i + 1, end);
        if (name == NULL || PyList_Append(names, name) < 0) {
            Py_XDECREF(name);
            return -1;
        }
        Py_DECREF(name);
        i = end - 1;
    }
    return 0;
}

/* Which ATTR_NAMES entry starts at j (its index), or -1. */
static int SCAN(attr_name_at)(const SCAN_CHAR *s, Py_ssize_t j, Py_ssize_t n) {
    if (j >= n)
        return -1;
    for (int index = 0; ATTR_NAMES[index]; index++) {
        const char *name = ATTR_NAMES[index];
        if ((Py_UCS4)s[j] != (Py_UCS4)(unsigned char)name[0])
            continue;
        Py_ssize_t size = ATTR_LENGTHS[index];
        if (j + size > n)
            continue;
        Py_ssize_t k = 1;
        while (k < size && (Py_UCS4)s[j + k] == (Py_UCS4)(unsigned char)name[k])
            k++;
        if (k == size)
            return index;
    }
    return -1;
}

/* Appends (name, value) of each useful attribute of the text to found; -1 on error. */
static int SCAN(useful_attrs)(PyObject *text, const void *data, Py_ssize_t n, PyObject *found) {
    const SCAN_CHAR *s = data;
    Py_ssize_t i = 0;
    while (i < n) {
        if (!Py_UNICODE_ISSPACE(s[i])) {
            i++;
            continue;
        }
        int index = SCAN(attr_name_at)(s, i + 1, n);
        if (index < 0) {
            i++;
            continue;
        }
        Py_ssize_t k = i + 1 + ATTR_LENGTHS[index];
        while (k < n && Py_UNICODE_ISSPACE(s[k]))
            k++;
        if (k >= n || s[k] != '=') {
            i++;
            continue;
        }
        k++;
        while (k < n && Py_UNICODE_ISSPACE(s[k]))
            k++;
        Py_ssize_t value_start, value_end, end;
        if (k < n && (s[k] == '"' || s[k] == '\'')) {
            SCAN_CHAR quote = s[k];
            Py_ssize_t p = k + 1;
            while (p < n && s[p] != quote && s[p] != '<')
                p++;
            if (p >= n || s[p] != quote) {
                i++;
                continue;
            }
            value_start = k + 1;
            value_end = p;
            end = p + 1;
        } else {
            Py_ssize_t p = k;
            while (p < n && !Py_UNICODE_ISSPACE(s[p]) && s[p] != '<' && s[p] != '>' &&
                   s[p] != '"' && s[p] != '\'')
                p++;
            if (p == k) {
                i++;
                continue;
            }
            value_start = k;
            value_end = p;
            end = p;
        }
        PyObject *value = PyUnicode_Substring(text, value_start, value_end);
        if (value == NULL)
            return -1;
        PyObject *pair = PyTuple_Pack(2, ATTR_OBJECTS[index], value);
        Py_DECREF(value);
        if (pair == NULL || PyList_Append(found, pair) < 0) {
            Py_XDECREF(pair);
            return -1;
        }
        Py_DECREF(pair);
        i = end;
    }
    return 0;
}

/* Appends the URLs written in the text to found; -1 on error, 1 (found emptied) when
   the text has "HTTP", "Http", "WWW." or "Www.", which the any-case pattern handles. */
static int SCAN(text_urls)(PyObject *text, const void *data, Py_ssize_t n, PyObject *found) {
    const SCAN_CHAR *s = data;
    for (Py_ssize_t i = 0; i + 3 < n; i++) {
        if ((s[i] == 'H' && (s[i + 1] == 'T' || s[i + 1] == 't') && s[i + 2] == s[i + 1]
                && s[i + 3] == (s[i + 1] == 'T' ? 'P' : 'p'))
                || (s[i] == 'W' && (s[i + 1] == 'W' || s[i + 1] == 'w') && s[i + 2] == s[i + 1]
                    && s[i + 3] == '.'))
            return 1;
    }
    Py_ssize_t i = 0;
    while (i < n) {
        Py_ssize_t prefix = 0;
        if (s[i] == 'h' && i + 7 <= n && s[i + 1] == 't' && s[i + 2] == 't' && s[i + 3] == 'p') {
            if (i + 8 <= n && s[i + 4] == 's' && s[i + 5] == ':' && s[i + 6] == '/' && s[i + 7] == '/')
                prefix = 8;
            else if (s[i + 4] == ':' && s[i + 5] == '/' && s[i + 6] == '/')
                prefix = 7;
        } else if (s[i] == 'w' && i + 4 <= n && s[i + 1] == 'w' && s[i + 2] == 'w' && s[i + 3] == '.') {
            prefix = 4;
        }
        if (prefix) {
            Py_ssize_t start = i + prefix, k = start;
            while (k < n && k - start < 400 && is_url_char(s[k]))
                k++;
            if (k - start >= 2) {
                PyObject *url = PyUnicode_Substring(text, i, k);
                if (url == NULL || PyList_Append(found, url) < 0) {
                    Py_XDECREF(url);
                    return -1;
                }
                Py_DECREF(url);
                i = k;
                continue;
            }
        }
        i++;
    }
    return 0;
}

/* The fields of an unfolded header block, appended to fields as (name, value); the
   block's line count in *lines. -1 on error. */
static int SCAN(fields)(PyObject *text, const void *data, Py_ssize_t n, int keep_case,
                        PyObject *fields, Py_ssize_t *lines) {
    const SCAN_CHAR *s = data;
    Py_ssize_t count = 0;
    for (Py_ssize_t line = 0; line < n;) {
        Py_ssize_t end = line;
        while (end < n && s[end] != '\n')
            end++;
        count += end < n;
        /* ^([\x21-\x39\x3b-\x7e]{1,100})[ \t]*:[ \t]*(.*)$ */
        Py_ssize_t k = line;
        while (k < end && k - line <= 100 && s[k] >= 0x21 && s[k] <= 0x7e && s[k] != ':')
            k++;
        Py_ssize_t name_length = k - line, j = k;
        while (j < end && (s[j] == ' ' || s[j] == '\t'))
            j++;
        if (name_length >= 1 && name_length <= 100 && j < end && s[j] == ':') {
            j++;
            while (j < end && (s[j] == ' ' || s[j] == '\t'))
                j++;
            Py_ssize_t value_end = end;
            while (value_end > j && Py_UNICODE_ISSPACE(s[value_end - 1]))
                value_end--;
            char name[101];
            for (Py_ssize_t m = 0; m < name_length; m++) {
                char c = (char)s[line + m];
                name[m] = (!keep_case && c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
            }
            PyObject *value = PyUnicode_Substring(text, j, value_end);
            PyObject *pair = value == NULL ? NULL
                : Py_BuildValue("(s#N)", name, name_length, value);
            if (pair == NULL || PyList_Append(fields, pair) < 0) {
                Py_XDECREF(pair);
                return -1;
            }
            Py_DECREF(pair);
        }
        line = end + 1;
    }
    /* text.count("\n") + (not text.endswith("\n")) */
    *lines = count + (n == 0 || s[n - 1] != '\n');
    return 0;
}
