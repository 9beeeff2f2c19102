# stand-in for the summarizer API
