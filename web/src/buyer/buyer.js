console.log('buyer');
