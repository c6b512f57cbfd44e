package main

import (
	"io"
	"strings"
	"unicode/utf8"
)

// grid lays rows out in columns by the width a person sees. tabwriter
// counts the bytes of colour codes as width, so a coloured cell pushed the
// columns after it out of line. Cells are made terminal-safe: a request's
// fields come from whoever made it.
type grid struct {
	rows [][]cell
}

// cell is one table cell; colour is an SGR code such as "32", used only on
// a terminal.
type cell struct {
	text, colour string
}

func (t *grid) add(cells ...cell) {
	for i := range cells {
		cells[i].text = terminalSafe(cells[i].text)
	}
	t.rows = append(t.rows, cells)
}

// addText adds a row of uncoloured cells.
func (t *grid) addText(texts ...string) {
	cells := make([]cell, len(texts))
	for i, s := range texts {
		cells[i] = cell{text: s}
	}
	t.add(cells...)
}

// write prints the table with two spaces between columns and no padding
// after the last cell of a row.
func (t *grid) write(w io.Writer, colour bool) error {
	var widths []int
	for _, row := range t.rows {
		for i, c := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c.text))
		}
	}
	var b strings.Builder
	for _, row := range t.rows {
		for i, c := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			if colour && c.colour != "" {
				b.WriteString("\033[" + c.colour + "m" + c.text + "\033[0m")
			} else {
				b.WriteString(c.text)
			}
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c.text)))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}
