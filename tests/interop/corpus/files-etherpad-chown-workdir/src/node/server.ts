console.log('Etherpad server');
