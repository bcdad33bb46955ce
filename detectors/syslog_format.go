package detectors

// The syslog wire format: RFC 6587 framing over TCP, and the conversion of
// RFC 3164 and RFC 5424 messages into the line shape the parsers read.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"time"
)

// frameKind is what readFrame found.
type frameKind uint8

const (
	frameNone      frameKind = iota // nothing: the connection ended or failed
	frameEmpty                      // an empty line between frames
	frameMalformed                  // an octet-counting header that is not one; its line was skipped
	frameMessage                    // a message
)

// readFrame reads the next RFC 6587 frame from br: octet-counted ("LEN SP
// MSG") when it starts with a digit, newline-terminated otherwise. It keeps
// at most maxMsg bytes of the message in msg (reused) and returns the
// message's whole length n. A last newline-framed message cut off by the
// end of the connection is a frameMessage returned with io.EOF.
func readFrame(br *bufio.Reader, msg []byte, maxMsg int) (_ []byte, n int, kind frameKind, err error) {
	first, err := br.ReadByte()
	if err != nil {
		return msg, 0, frameNone, err
	}
	if first == '\n' || first == '\r' {
		return msg, 0, frameEmpty, nil
	}
	if first >= '1' && first <= '9' {
		// Octet counting: "LEN SP MSG".
		size, ok, err := readOctetCount(br, first)
		if err != nil {
			return msg, 0, frameNone, err
		}
		if !ok {
			// Not a frame header: skip to the end of the line and read
			// on with newline framing.
			_, _, err := readLF(br, msg[:0], 0)
			return msg, 0, frameMalformed, err
		}
		keep := min(size, maxMsg)
		msg = growTo(msg, keep)
		if _, err := io.ReadFull(br, msg); err != nil {
			return msg, 0, frameNone, err
		}
		if size > keep {
			if _, err := br.Discard(size - keep); err != nil {
				return msg, 0, frameNone, err
			}
		}
		return msg, size, frameMessage, nil
	}
	// Newline framing.
	br.UnreadByte()
	msg, n, err = readLF(br, msg[:0], maxMsg)
	if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
		return msg, n, frameNone, err
	}
	return msg, n, frameMessage, err
}

// readOctetCount reads the rest of an octet-counting header whose first
// digit was first. ok is false when the bytes are not a header.
func readOctetCount(br *bufio.Reader, first byte) (size int, ok bool, err error) {
	size = int(first - '0')
	for range 10 {
		c, err := br.ReadByte()
		if err != nil {
			return 0, false, err
		}
		switch {
		case c == ' ':
			return size, true, nil
		case c >= '0' && c <= '9':
			size = size*10 + int(c-'0')
		default:
			br.UnreadByte()
			return 0, false, nil
		}
	}
	return 0, false, nil // more digits than any sane length
}

// readLF reads up to the next newline and appends at most limit bytes of
// it, without the newline, to dst. n is the length of the whole message.
func readLF(br *bufio.Reader, dst []byte, limit int) (msg []byte, n int, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		done := err == nil
		if done {
			chunk = chunk[:len(chunk)-1]
		}
		n += len(chunk)
		if room := limit - len(dst); room > 0 {
			dst = append(dst, chunk[:min(room, len(chunk))]...)
		}
		if done {
			return dst, n, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return dst, n, err
		}
	}
}

func growTo(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// AppendSyslogLine appends to dst the line the parsers read for one
// syslog message (RFC 3164 or RFC 5424, without framing) and reports
// whether msg is syslog at all: it must start with a valid "<PRI>" and
// carry something after it.
func AppendSyslogLine(dst, msg []byte) ([]byte, bool) {
	msg = bytes.TrimRight(msg, "\r\n\x00")
	if len(msg) < 3 || msg[0] != '<' {
		return dst, false
	}
	pri, i := 0, 1
	for ; i < len(msg) && i <= 4 && isDigit(msg[i]); i++ {
		pri = pri*10 + int(msg[i]-'0')
	}
	if i == 1 || i > 4 || i >= len(msg) || msg[i] != '>' || pri > 191 {
		return dst, false
	}
	rest := msg[i+1:]
	if len(rest) >= 2 && rest[0] == '1' && rest[1] == ' ' {
		return append5424(dst, rest[2:])
	}
	if len(bytes.TrimSpace(rest)) == 0 {
		return dst, false
	}
	// RFC 3164. Some senders leave the host name out after a classic
	// stamp ("<13>Nov  2 10:00:00 sshd[1]: ..."); the parsers expect one.
	if len(rest) >= 16 && rest[3] == ' ' && rest[6] == ' ' && rest[9] == ':' && rest[12] == ':' && rest[15] == ' ' {
		if _, _, ok := syslogTag(string(rest[16:])); ok {
			dst = appendClean(dst, rest[:16])
			dst = append(dst, "- "...)
			return appendClean(dst, rest[16:]), true
		}
	}
	return appendClean(dst, rest), true
}

// append5424 converts the part of an RFC 5424 message after its version.
func append5424(dst, b []byte) ([]byte, bool) {
	var stamp, host, app, procid []byte
	var ok bool
	if stamp, b, ok = field5424(b, 64); !ok {
		return dst, false
	}
	if host, b, ok = field5424(b, 255); !ok {
		return dst, false
	}
	if app, b, ok = field5424(b, 48); !ok {
		return dst, false
	}
	if procid, b, ok = field5424(b, 128); !ok {
		return dst, false
	}
	if _, b, ok = field5424(b, 32); !ok { // MSGID
		return dst, false
	}
	msg, ok := skipStructuredData(b)
	if !ok {
		return dst, false
	}
	msg = bytes.TrimPrefix(msg, []byte("\xef\xbb\xbf"))
	nilStamp := string(stamp) == "-"
	if !nilStamp {
		if _, err := time.Parse(time.RFC3339Nano, string(stamp)); err != nil {
			return dst, false
		}
		dst = append(dst, stamp...)
		dst = append(dst, ' ')
	}
	// Without a stamp the parsers find the tag after the first word, so
	// the host stays even when it is "-".
	dst = append(dst, host...)
	dst = append(dst, ' ')
	if string(app) != "-" {
		dst = append(dst, app...)
		if allDigits(procid) {
			dst = append(dst, '[')
			dst = append(dst, procid...)
			dst = append(dst, ']')
		}
		dst = append(dst, ": "...)
	}
	return appendClean(dst, msg), true
}

// field5424 splits a header field, which must be printable ASCII without
// spaces, at most limit bytes long, and followed by a space.
func field5424(b []byte, limit int) (field, rest []byte, ok bool) {
	i := bytes.IndexByte(b, ' ')
	if i <= 0 || i > limit {
		return nil, nil, false
	}
	for _, c := range b[:i] {
		if c < 33 || c > 126 {
			return nil, nil, false
		}
	}
	return b[:i], b[i+1:], true
}

// skipStructuredData skips "-" or one or more "[id k="v" ...]" elements
// (with \" \\ \] escapes in values) and returns the message after them.
func skipStructuredData(b []byte) (msg []byte, ok bool) {
	switch {
	case len(b) == 0:
		return nil, false
	case b[0] == '-':
		b = b[1:]
	case b[0] == '[':
		for len(b) > 0 && b[0] == '[' {
			i, quoted := 1, false
			for ; i < len(b); i++ {
				c := b[i]
				if quoted {
					if c == '\\' {
						i++
					} else if c == '"' {
						quoted = false
					}
					continue
				}
				if c == '"' {
					quoted = true
				} else if c == ']' {
					break
				}
			}
			if i >= len(b) {
				return nil, false
			}
			b = b[i+1:]
		}
	default:
		return nil, false
	}
	if len(b) == 0 {
		return nil, true
	}
	if b[0] != ' ' {
		return nil, false
	}
	return b[1:], true
}

func allDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// appendClean appends b with line breaks and NULs turned into spaces: one
// message is one line.
func appendClean(dst, b []byte) []byte {
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\r\n\x00")
		if i < 0 {
			return append(dst, b...)
		}
		dst = append(dst, b[:i]...)
		dst = append(dst, ' ')
		b = b[i+1:]
	}
	return dst
}
