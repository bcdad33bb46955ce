package main

// Bulk blocks and allows: indicators read from a file, deduplicated, split
// into block_bulk or allow_bulk commands of up to intel.MaxBulkIndicators
// indicators each, signed and submitted a few at a time.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

// Bounds of a bulk import.
const (
	// maxBulkLine bounds one line of an indicator file.
	maxBulkLine = 8 << 10
	// maxBulkErrors is how many bad lines are reported before giving up.
	maxBulkErrors = 10
	// maxBulkCommandBody bounds a bulk command's signed body so that its
	// mesh entry (the body in base64 inside JSON) stays under the mesh's
	// 256 KiB entry limit; intel.MaxOperatorBody may bound it further.
	maxBulkCommandBody = 180 << 10
	// defaultBulkParallel is how many bulk commands are in flight at once.
	defaultBulkParallel = 4
)

// fileIndicator is an indicator read from a file and the line it is on.
type fileIndicator struct {
	ind  intel.Indicator
	line int
}

// indicatorFile is what readIndicators found in a file.
type indicatorFile struct {
	name       string
	indicators []fileIndicator // distinct, in file order
	duplicates int
}

// readIndicators reads one indicator per line (typ forces their type):
// blank lines and lines starting with '#' are skipped, and a '#' after the
// indicator starts a comment. Any bad line fails the whole file, with
// every bad line (up to maxBulkErrors) named by file and line number.
func readIndicators(name string, r io.Reader, typ string) (indicatorFile, error) {
	f := indicatorFile{name: name}
	seen := map[string]bool{}
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxBulkLine)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) > 1 && !strings.HasPrefix(fields[1], "#") {
			errs = append(errs, fmt.Errorf("%s:%d: %q: one indicator per line (a comment after it starts with '#')", name, line, text))
		} else if ind, err := parseIndicatorArg(fields[0], typ); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, line, err))
		} else if seen[ind.Key()] {
			f.duplicates++
		} else {
			seen[ind.Key()] = true
			f.indicators = append(f.indicators, fileIndicator{ind: ind, line: line})
		}
		if len(errs) >= maxBulkErrors {
			errs = append(errs, fmt.Errorf("%s: stopped after %d bad lines", name, maxBulkErrors))
			break
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line over %d bytes", maxBulkLine)
		}
		errs = append(errs, fmt.Errorf("%s:%d: %w", name, line+1, err))
	}
	if len(errs) > 0 {
		return indicatorFile{}, fmt.Errorf("%w; nothing was submitted", errors.Join(errs...))
	}
	if len(f.indicators) == 0 {
		return indicatorFile{}, fmt.Errorf("%s holds no indicator; nothing was submitted", name)
	}
	return f, nil
}

// openIndicators reads the indicator file path ("-" for stdin).
func openIndicators(cmd *cobra.Command, path, typ string) (indicatorFile, error) {
	if path == "-" {
		return readIndicators("stdin", cmd.InOrStdin(), typ)
	}
	fh, err := os.Open(path)
	if err != nil {
		return indicatorFile{}, fmt.Errorf("read indicators: %w", err)
	}
	defer fh.Close()
	return readIndicators(path, fh, typ)
}

// bulkChunk is the indicators of one bulk command.
type bulkChunk []fileIndicator

// splitBulk splits inds into commands of up to intel.MaxBulkIndicators
// indicators whose body, built from base, stays within maxBody bytes.
func splitBulk(base intel.OperatorCommand, inds []fileIndicator, maxBody int) ([]bulkChunk, error) {
	base.Indicators = nil
	// The header's fields have fixed widths but for the mesh ID; a
	// generous placeholder stands for them.
	base.Header = intel.OperatorHeader{Mesh: strings.Repeat("m", 128), Nonce: strings.Repeat("0", 32)}
	b, err := json.Marshal(base)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	overhead := len(b) + len(`,"indicators":[]`) + 64
	var out []bulkChunk
	var cur bulkChunk
	size := overhead
	for _, fi := range inds {
		ib, err := json.Marshal(fi.ind)
		if err != nil {
			return nil, fmt.Errorf("encode indicator: %w", err)
		}
		n := len(ib) + 1
		if overhead+n > maxBody {
			return nil, fmt.Errorf("line %d: indicator of %d bytes does not fit a command", fi.line, len(ib))
		}
		if len(cur) == intel.MaxBulkIndicators || size+n > maxBody {
			out = append(out, cur)
			cur, size = nil, overhead
		}
		cur = append(cur, fi)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out, nil
}

// BulkResult is the outcome of one bulk command, as -o json prints it.
type BulkResult struct {
	Command    int    `json:"command"` // 1-based, in file order
	Indicators int    `json:"indicators"`
	FirstLine  int    `json:"first_line"`
	LastLine   int    `json:"last_line"`
	Accepted   bool   `json:"accepted"`
	Nonce      string `json:"nonce,omitempty"`
	Error      string `json:"error,omitempty"`
}

// BulkReport is what a bulk block or allow did.
type BulkReport struct {
	File       string       `json:"file"`
	Op         string       `json:"op"`
	Indicators int          `json:"indicators"` // distinct
	Duplicates int          `json:"duplicates"` // skipped
	Accepted   int          `json:"accepted"`   // indicators committed
	Commands   []BulkResult `json:"commands"`
}

var bulkPosition = regexp.MustCompile(`indicators\[(\d+)\]`)

// submitBulk signs and submits the chunks, parallel at a time, and
// reports each command's outcome.
func submitBulk(ctx context.Context, c *admin.Client, ss *signSession, base intel.OperatorCommand, f indicatorFile, chunks []bulkChunk, parallel int) BulkReport {
	rep := BulkReport{File: f.name, Op: string(base.Op), Indicators: len(f.indicators), Duplicates: f.duplicates,
		Commands: make([]BulkResult, len(chunks))}
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(parallel, len(chunks))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				rep.Commands[i] = submitChunk(ctx, c, ss, base, f.name, i, chunks[i])
			}
		}()
	}
	for i := range chunks {
		work <- i
	}
	close(work)
	wg.Wait()
	for _, r := range rep.Commands {
		if r.Accepted {
			rep.Accepted += r.Indicators
		}
	}
	return rep
}

// submitChunk signs and submits one bulk command (signed just before it
// is sent, so that its time window starts then).
func submitChunk(ctx context.Context, c *admin.Client, ss *signSession, base intel.OperatorCommand, file string, i int, ch bulkChunk) BulkResult {
	r := BulkResult{Command: i + 1, Indicators: len(ch), FirstLine: ch[0].line, LastLine: ch[len(ch)-1].line}
	cmd := base
	cmd.Indicators = make([]intel.Indicator, len(ch))
	for j, fi := range ch {
		cmd.Indicators[j] = fi.ind
	}
	signed, err := ss.sign(cmd)
	if err == nil {
		var res admin.OperatorResult
		res, err = c.SubmitOperator(ctx, signed)
		r.Nonce = res.Nonce
	}
	if err != nil {
		msg := apiErr(err).Error()
		// The mesh names a refused indicator by its position in the
		// command; name its line too.
		if m := bulkPosition.FindStringSubmatch(msg); m != nil {
			if j, err := strconv.Atoi(m[1]); err == nil && j < len(ch) {
				msg += fmt.Sprintf(" (%s:%d)", file, ch[j].line)
			}
		}
		r.Error = msg
		return r
	}
	r.Accepted = true
	return r
}

func printBulkReport(w io.Writer, rep BulkReport) {
	fmt.Fprintln(w, "COMMAND\tINDICATORS\tLINES\tRESULT")
	for _, r := range rep.Commands {
		result := "accepted"
		if !r.Accepted {
			result = "not committed: " + r.Error
		}
		fmt.Fprintf(w, "%d/%d\t%d\t%d-%d\t%s\n", r.Command, len(rep.Commands), r.Indicators, r.FirstLine, r.LastLine, result)
	}
	fmt.Fprintf(w, "%s: %d of %d distinct indicators committed (%s) in %d commands; %d duplicates skipped\n",
		rep.File, rep.Accepted, rep.Indicators, rep.Op, len(rep.Commands), rep.Duplicates)
}

// runBulk is `meshward policy block|allow --file FILE`: it reads and
// checks the whole file before it submits anything.
func runBulk(cmd *cobra.Command, f *clientFlags, s *signer, path, typ string, base intel.OperatorCommand, parallel int) error {
	file, err := openIndicators(cmd, path, typ)
	if err != nil {
		return err
	}
	maxBody := min(maxBulkCommandBody, intel.MaxOperatorBody)
	chunks, err := splitBulk(base, file.indicators, maxBody)
	if err != nil {
		return fmt.Errorf("%s: %w; nothing was submitted", file.name, err)
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	defer c.Close()
	ss, err := s.session(cmd.Context(), c)
	if err != nil {
		return apiErr(err)
	}
	rep := submitBulk(cmd.Context(), c, ss, base, file, chunks, parallel)
	out := cmd.OutOrStdout()
	if f.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		tw := newTable(out)
		printBulkReport(tw, rep)
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	refused := 0
	for _, r := range rep.Commands {
		if !r.Accepted {
			refused++
		}
	}
	if refused > 0 {
		return fmt.Errorf("%d of %d %s commands were not committed, with their %d indicators (a command commits all its indicators or none)",
			refused, len(rep.Commands), base.Op, rep.Indicators-rep.Accepted)
	}
	return nil
}
