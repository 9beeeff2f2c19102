module github.com/TeddyDD/theia/caddy

go 1.14
