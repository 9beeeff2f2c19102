"""`rl build`: Dockerfile parsing (dockerfile), BuildKit's variable expansion (expand),
.dockerignore (ignore), COPY/ADD source selection and content hashing (context), and the engine
that runs the steps on top of them."""
