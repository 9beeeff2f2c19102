module github.com/TeddyDD/theia/md2html

go 1.14
