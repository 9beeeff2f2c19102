module.exports = require('./dist/core/screener');
