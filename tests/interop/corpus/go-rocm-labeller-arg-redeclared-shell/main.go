package main

import "fmt"

func main() {
	fmt.Println("network-node-labeller")
}
