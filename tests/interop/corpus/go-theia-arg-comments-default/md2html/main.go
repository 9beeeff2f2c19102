package main

import "fmt"

func main() {
	fmt.Println("<p>md2html</p>")
}
