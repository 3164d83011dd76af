package sources

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// fileGlob is one `paths` or `exclude` pattern. Patterns use
// filepath.Match syntax per path element, plus `**`, which matches any
// number of directories (zero included).
type fileGlob struct {
	pattern string   // cleaned, with forward slashes
	root    string   // deep patterns: the directory walked (the pattern's literal prefix)
	elems   []string // deep patterns: the elements after root
	deep    bool     // the pattern holds `**`
	base    bool     // exclude patterns without a separator match the file name
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// compileGlob checks a pattern and prepares it for matching.
func compileGlob(p string) (fileGlob, error) {
	if p == "" {
		return fileGlob{}, errors.New("empty pattern")
	}
	g := fileGlob{pattern: filepath.ToSlash(filepath.Clean(p))}
	elems := strings.Split(g.pattern, "/")
	for _, e := range elems {
		if e == "**" {
			g.deep = true
			continue
		}
		if strings.Contains(e, "**") {
			return fileGlob{}, errors.New("`**` must be a whole path element, as in logs/**/*.log")
		}
		if _, err := path.Match(e, ""); err != nil {
			return fileGlob{}, err
		}
	}
	g.base = !strings.Contains(g.pattern, "/")
	if g.deep {
		i := 0
		for i < len(elems) && !hasMeta(elems[i]) {
			i++
		}
		g.root = strings.Join(elems[:i], "/")
		switch {
		case g.root == "" && strings.HasPrefix(g.pattern, "/"):
			g.root = "/"
		case g.root == "":
			g.root = "."
		}
		g.elems = elems[i:]
	}
	return g, nil
}

// expand returns the files (not directories) the pattern matches, in
// lexical order. Unreadable directories are skipped, as filepath.Glob does.
func (g fileGlob) expand() []string {
	if !g.deep {
		m, _ := filepath.Glob(filepath.FromSlash(g.pattern))
		out := m[:0]
		for _, p := range m {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				out = append(out, p)
			}
		}
		return out
	}
	var out []string
	root := filepath.FromSlash(g.root)
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if d != nil && d.IsDir() && p != root {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		rel, rerr := filepath.Rel(root, p)
		if rerr != nil || !matchElems(g.elems, strings.Split(filepath.ToSlash(rel), "/")) {
			return nil
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() { // follows symlinks
			out = append(out, p)
		}
		return nil
	})
	return out
}

// match reports whether a path matches the pattern (for exclude).
func (g fileGlob) match(p string) bool {
	p = filepath.ToSlash(filepath.Clean(p))
	if g.base {
		ok, _ := path.Match(g.pattern, path.Base(p))
		return ok
	}
	pat := g.pattern
	if strings.HasPrefix(pat, "/") != strings.HasPrefix(p, "/") {
		// Compare absolute forms when one side is relative.
		ap, err1 := filepath.Abs(filepath.FromSlash(pat))
		aq, err2 := filepath.Abs(filepath.FromSlash(p))
		if err1 != nil || err2 != nil {
			return false
		}
		pat, p = filepath.ToSlash(ap), filepath.ToSlash(aq)
	}
	return matchElems(strings.Split(pat, "/"), strings.Split(p, "/"))
}

// matchElems matches path elements against pattern elements, `**`
// standing for any number of elements.
func matchElems(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for len(pat) > 0 && pat[0] == "**" {
				pat = pat[1:]
			}
			if len(pat) == 0 {
				return true
			}
			for i := range name {
				if matchElems(pat, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}
