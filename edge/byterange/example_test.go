package byterange_test

import (
	"fmt"
	"strings"

	"github.com/meridiancdn/meridian/edge/byterange"
)

func ExampleParse() {
	body := "Hello, multipart world!"
	ranges, err := byterange.Parse("bytes=0-4, -6, 3-5", int64(len(body)))
	if err != nil {
		fmt.Println(err)
		return
	}
	m := byterange.Multipart{Ranges: ranges, Size: int64(len(body)), ContentType: "text/plain", Boundary: "SEP"}
	fmt.Println(m.ContentTypeHeader())
	fmt.Println("Content-Length:", m.ContentLength())
	var out strings.Builder
	if _, err := m.WriteTo(&out, strings.NewReader(body)); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(strings.ReplaceAll(out.String(), "\r\n", "\n")) // CRLF shown as LF

	// Output:
	// multipart/byteranges; boundary=SEP
	// Content-Length: 155
	// --SEP
	// Content-Type: text/plain
	// Content-Range: bytes 0-5/23
	//
	// Hello,
	// --SEP
	// Content-Type: text/plain
	// Content-Range: bytes 17-22/23
	//
	// world!
	// --SEP--
}
