module tsubasaxzzz/aks-testpod

go 1.13
