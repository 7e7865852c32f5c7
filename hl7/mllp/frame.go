// Package mllp implements the Minimal Lower Layer Protocol that carries HL7
// v2 messages over TCP (HL7 v2.5.1 Appendix C; "Transport Specification:
// MLLP, Release 2"): a block is 0x0B, the message, 0x1C 0x0D. It has the
// frame reader and writer, a listener with TLS, mutual TLS, a peer
// allow-list, limits and graceful shutdown, and a client with retries.
package mllp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

const (
	startBlock = 0x0B
	endBlock   = 0x1C
	carriageCR = 0x0D
)

// Frame errors.
var (
	ErrFrameTooLarge     = errors.New("mllp: frame exceeds the size limit")
	ErrUnterminatedFrame = fmt.Errorf("mllp: connection ended inside a frame: %w", io.ErrUnexpectedEOF)
)

// Reader reads MLLP frames.
type Reader struct {
	br      *bufio.Reader
	max     int
	skipped int64
}

// NewReader reads frames of at most maxFrame payload bytes from r.
func NewReader(r io.Reader, maxFrame int) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10), max: maxFrame}
}

// Skipped is the number of bytes seen outside frames so far.
func (r *Reader) Skipped() int64 { return r.skipped }

// ReadFrame returns the next frame's payload, in a new slice. Bytes before
// a start block are skipped and counted. io.EOF means the stream ended
// cleanly between frames. A 0x1C not followed by 0x0D is taken as part of
// the payload (some senders put it in data); only 0x1C 0x0D ends a frame.
func (r *Reader) ReadFrame() ([]byte, error) {
	for {
		b, err := r.br.ReadByte()
		if err != nil {
			return nil, err
		}
		if b == startBlock {
			break
		}
		r.skipped++
	}
	var out []byte
	for {
		chunk, err := r.br.ReadSlice(endBlock)
		if len(out)+len(chunk) > r.max+1 {
			return nil, ErrFrameTooLarge
		}
		out = append(out, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, ErrUnterminatedFrame
			}
			return nil, err
		}
		next, err := r.br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, ErrUnterminatedFrame
			}
			return nil, err
		}
		if next == carriageCR {
			payload := out[:len(out)-1]
			if len(payload) > r.max {
				return nil, ErrFrameTooLarge
			}
			return payload, nil
		}
		r.br.UnreadByte()
	}
}

// WriteFrame writes msg as one MLLP block in a single Write call.
func WriteFrame(w io.Writer, msg []byte) error {
	buf := make([]byte, 0, len(msg)+3)
	buf = append(buf, startBlock)
	buf = append(buf, msg...)
	buf = append(buf, endBlock, carriageCR)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("writing MLLP frame: %w", err)
	}
	return nil
}
