package fencekit

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// headerPath is the C ABI's header in the repository, relative to this package.
const headerPath = "../../ffi/include/fencekit.h"

// headerStatuses is every FK_STATUS_* of a header but OK: name (without the prefix) to code.
func headerStatuses(header string) map[string]uint32 {
	codes := map[string]uint32{}
	re := regexp.MustCompile(`(?m)^#define FK_STATUS_([A-Z0-9_]+) ([0-9]+)\s*$`)
	for _, m := range re.FindAllStringSubmatch(header, -1) {
		code, _ := strconv.ParseUint(m[2], 10, 32)
		if m[1] != "OK" {
			codes[m[1]] = uint32(code)
		}
	}
	return codes
}

// goSentinels is every package-level `var ErrX = &Error{Status: C.FK_STATUS_Y}` of a Go
// source: variable name to Y.
func goSentinels(t *testing.T, name, src string) map[string]string {
	t.Helper()
	file, err := parser.ParseFile(gotoken.NewFileSet(), name, src, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, decl := range file.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != gotoken.VAR {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if !strings.HasPrefix(id.Name, "Err") || i >= len(vs.Values) {
					continue
				}
				if status, ok := statusOf(vs.Values[i]); ok {
					found[id.Name] = status
				}
			}
		}
	}
	return found
}

// statusOf reads Y from &Error{Status: C.FK_STATUS_Y}.
func statusOf(e ast.Expr) (string, bool) {
	u, ok := e.(*ast.UnaryExpr)
	if !ok || u.Op != gotoken.AND {
		return "", false
	}
	lit, ok := u.X.(*ast.CompositeLit)
	if !ok || fmt.Sprint(lit.Type) != "Error" {
		return "", false
	}
	for _, elt := range lit.Elts {
		kv, ok := elt.(*ast.KeyValueExpr)
		if !ok || fmt.Sprint(kv.Key) != "Status" {
			continue
		}
		if sel, ok := kv.Value.(*ast.SelectorExpr); ok && fmt.Sprint(sel.X) == "C" &&
			strings.HasPrefix(sel.Sel.Name, "FK_STATUS_") {
			return strings.TrimPrefix(sel.Sel.Name, "FK_STATUS_"), true
		}
	}
	return "", false
}

// sentinelName is the Go name of a status: ErrInvalidToken for INVALID_TOKEN, with the
// initialisms Go spells in capitals.
func sentinelName(status string) string {
	name := "Err"
	for _, word := range strings.Split(status, "_") {
		switch word {
		case "IO", "TLS", "UTF8":
			name += word
		default:
			name += word[:1] + strings.ToLower(word[1:])
		}
	}
	return name
}

// sentinelProblems compares the header's status codes with the sentinels: each code needs
// one, named after it, and each sentinel's code must be in the header.
func sentinelProblems(header map[string]uint32, sentinels map[string]string) []string {
	var problems []string
	covered := map[string]string{}
	for name, status := range sentinels {
		if _, ok := header[status]; !ok {
			problems = append(problems, fmt.Sprintf("%s is FK_STATUS_%s, which the header does not define", name, status))
		}
		if want := sentinelName(status); name != want {
			problems = append(problems, fmt.Sprintf("%s is FK_STATUS_%s: name it %s", name, status, want))
		}
		if other, ok := covered[status]; ok {
			problems = append(problems, fmt.Sprintf("%s and %s are both FK_STATUS_%s", other, name, status))
		}
		covered[status] = name
	}
	for status, code := range header {
		if _, ok := covered[status]; !ok {
			problems = append(problems, fmt.Sprintf("FK_STATUS_%s (%d) has no sentinel: add %s", status, code, sentinelName(status)))
		}
	}
	sort.Strings(problems)
	return problems
}

// Every status code of the C ABI has its sentinel, and every sentinel is a code of the ABI:
// so errors.Is works for every failure the library can report.
func TestEveryStatusCodeHasOneSentinel(t *testing.T) {
	raw, err := os.ReadFile(headerPath)
	if err != nil {
		t.Fatal(err)
	}
	header := headerStatuses(string(raw))
	if len(header) < 30 {
		t.Fatalf("%s: only %d status codes parsed: has the header's format changed?", headerPath, len(header))
	}
	sources, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	sentinels := map[string]string{}
	for _, path := range sources {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for name, status := range goSentinels(t, path, string(src)) {
			sentinels[name] = status
		}
	}
	for _, p := range sentinelProblems(header, sentinels) {
		t.Error(p)
	}
	// The linked library knows each code by the header's name, and errors.Is matches an
	// error of that code against its sentinel.
	for status, code := range header {
		if got := Status(code).Name(); got != "FK_STATUS_"+status {
			t.Errorf("status %d: the library names it %s, the header FK_STATUS_%s", code, got, status)
		}
	}
	if !errors.Is(&Error{Status: Status(header["INTERNAL"]), Message: "x"}, ErrInternal) {
		t.Error("an error of FK_STATUS_INTERNAL does not match ErrInternal")
	}
}

// The check above catches a planted gap: a code the Go side lacks, a sentinel for a code the
// header does not have, and a misnamed one.
func TestTheSentinelCheckCatchesPlantedGaps(t *testing.T) {
	header := headerStatuses("#define FK_STATUS_OK 0\n#define FK_STATUS_IO 2000\n#define FK_STATUS_INVALID_UTF8 1002\n#define FK_STATUS_NOT_LEADER 3000\n")
	src := `package fencekit
var (
	ErrIO          = &Error{Status: C.FK_STATUS_IO}
	ErrNotLeading  = &Error{Status: C.FK_STATUS_NOT_LEADER}
	ErrGone        = &Error{Status: C.FK_STATUS_GONE}
	ErrClosed      = errors.New("closed")
)`
	got := sentinelProblems(header, goSentinels(t, "planted.go", src))
	want := []string{
		"ErrGone is FK_STATUS_GONE, which the header does not define",
		"ErrNotLeading is FK_STATUS_NOT_LEADER: name it ErrNotLeader",
		"FK_STATUS_INVALID_UTF8 (1002) has no sentinel: add ErrInvalidUTF8",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
