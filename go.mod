module github.com/evbench/evbench

go 1.26.0
