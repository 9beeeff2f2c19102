// docalibrate.js as the Makefile's dopushdcal step updates it
console.log('calibrating');
