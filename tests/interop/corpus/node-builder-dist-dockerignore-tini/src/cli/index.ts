const url: string = process.argv[2];
console.log(url);
