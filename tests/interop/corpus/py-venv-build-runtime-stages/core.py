# stand-in for the summarizer core
