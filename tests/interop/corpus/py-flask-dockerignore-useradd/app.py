# stand-in for the project's Flask app
app = None
