// gojsonsyntax prints, for each document, the error Go's encoding/json gives
// when decoding it (or "ok"). Documents arrive on stdin as a 4-byte big-endian
// length followed by the bytes; answers go to stdout one per line.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

func main() {
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for {
		var size uint32
		if err := binary.Read(in, binary.BigEndian, &size); err != nil {
			return
		}
		doc := make([]byte, size)
		if _, err := io.ReadFull(in, doc); err != nil {
			return
		}
		var v interface{}
		if err := json.Unmarshal(doc, &v); err != nil {
			fmt.Fprintf(out, "%q\n", err.Error())
		} else {
			fmt.Fprintln(out, `"ok"`)
		}
	}
}
