/*
 * fileutil.c — whole-file reads with a size bound (configuration, certificates, tokens).
 */

/* Reads a regular file of at most max bytes into out. */
static int file_read_all(const char *path, size_t max, buf *out, wc_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, errno == ENOENT ? WC_ENOTFOUND : WC_EIO, "read %s: %s", path, strerror(errno));
    /* Only regular files: a FIFO or a device named by a hostile config could block or never end. */
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, WC_EINVAL, "read %s: not a regular file", path);
    }
    buf_reset(out);
    size_t saved = out->limit;
    out->limit = max;
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            out->limit = saved;
            return err_set(err, WC_EIO, "read %s: %s", path, strerror(e));
        }
        if (n == 0) break;
        if (buf_append(out, chunk, (size_t)n) < 0) {
            close(fd);
            out->limit = saved;
            return err_set(err, WC_ETOOBIG, "read %s: larger than %zu bytes", path, max);
        }
    }
    close(fd);
    out->limit = saved;
    return 0;
}

/* Joins a relative path onto the directory of base_file (kubeconfig path semantics). */
static char *path_relative_to(const char *base_file, const char *path) {
    if (!path || path[0] == '/' || !base_file) return xstrdup(path);
    const char *slash = strrchr(base_file, '/');
    if (!slash) return xstrdup(path);
    size_t dl = (size_t)(slash - base_file);
    char *p = xmalloc(dl + 1 + strlen(path) + 1);
    memcpy(p, base_file, dl);
    p[dl] = '/';
    strcpy(p + dl + 1, path);
    return p;
}
